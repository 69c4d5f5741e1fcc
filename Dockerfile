# syntax=docker/dockerfile:1
# Build: docker build -t portcullis .
# Run:   docker run -p 8080:8080 -p 9090:9090 -e PORTCULLIS_ADMIN_TOKEN=$(openssl rand -hex 24) -v $PWD/config.yaml:/etc/portcullis/config.yaml:ro portcullis

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches persist between builds; the binary is copied out of them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portcullis \
 && cp target/release/portcullis /usr/local/bin/portcullis

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/portcullis --create-home portcullis
COPY --from=build /usr/local/bin/portcullis /usr/local/bin/portcullis
COPY config.example.yaml /etc/portcullis/config.yaml
USER portcullis
ENV PORTCULLIS_LISTEN=0.0.0.0:8080 PORTCULLIS_ADMIN=0.0.0.0:9090 PORTCULLIS_DATA=/var/lib/portcullis
WORKDIR /var/lib/portcullis
# 8080: webhooks; 9090: admin (health, readiness, metrics; /api and /queue need the token,
# and the admin listener refuses to start on 0.0.0.0 without PORTCULLIS_ADMIN_TOKEN).
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9090/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve", "--config", "/etc/portcullis/config.yaml", "--log-format", "json"]
