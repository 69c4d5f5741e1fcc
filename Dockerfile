# syntax=docker/dockerfile:1
# Build: docker build -t portcullis .
# Run:   docker run -p 8080:8080 -p 9090:9090 -e PORTCULLIS_ADMIN_TOKEN=$(openssl rand -hex 24) -v $PWD/config.yaml:/etc/portcullis/config.yaml:ro portcullis
# The built-in config (config.example.yaml) listens on 0.0.0.0, where its demo secrets are
# refused: without your own config, set every route's secret:
#        docker run -p 8080:8080 -p 9090:9090 -e PORTCULLIS_ADMIN_TOKEN=$(openssl rand -hex 24) \
#          -e PAYLENT_SECRET=… -e PAYMENTO_SECRET=… -e PAYABLE_SECRET=… -e PAYSAFE_SECRET=… \
#          -e PAYNETWORX_SECRET=… -v portcullis-data:/var/lib/portcullis portcullis

FROM rust:1-bookworm AS build
# The commit `portcullis_build_info` names (the build context has no .git):
#   docker build --build-arg COMMIT=$(git rev-parse --short=12 HEAD) -t portcullis .
ARG COMMIT=unknown
ENV PORTCULLIS_COMMIT=${COMMIT}
WORKDIR /src
COPY . .
# The registry and target caches persist between builds; the binary is copied out of them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portcullis \
 && cp target/release/portcullis /usr/local/bin/portcullis

FROM debian:bookworm-slim
ARG VERSION=0.1.0
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="Inbound webhook gateway: verifies signatures, drops forged, stale and duplicate deliveries, forwards the rest" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/portcullis --create-home portcullis
COPY --from=build /usr/local/bin/portcullis /usr/local/bin/portcullis
COPY config.example.yaml /etc/portcullis/config.yaml
# UID 10001: deploy/kubernetes.yaml runs it as this user, with a read-only root file system
# (it writes only to its data directory, a volume).
USER portcullis
ENV PORTCULLIS_LISTEN=0.0.0.0:8080 PORTCULLIS_ADMIN=0.0.0.0:9090 PORTCULLIS_DATA=/var/lib/portcullis
WORKDIR /var/lib/portcullis
# The embedded store and queue (delivered events, accepted deliveries): keep it on a volume.
VOLUME ["/var/lib/portcullis"]
# 8080: webhooks; 9090: admin (health, readiness, metrics; /api and /queue need the token,
# and the admin listener refuses to start on 0.0.0.0 without PORTCULLIS_ADMIN_TOKEN).
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/portcullis", "health", "--admin", "http://127.0.0.1:9090"]
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve", "--config", "/etc/portcullis/config.yaml", "--log-format", "json"]
