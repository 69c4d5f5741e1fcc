# syntax=docker/dockerfile:1
# Build: docker build -t portcullis .
# Run:   docker run -p 8080:8080 -p 9090:9090 -v $PWD/config.yaml:/etc/portcullis/config.yaml:ro portcullis

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so that code changes do not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
COPY providers ./providers
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --bin portcullis || true
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin portcullis

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/portcullis --create-home portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
COPY config.example.yaml /etc/portcullis/config.yaml
USER portcullis
ENV PORTCULLIS_LISTEN=0.0.0.0:8080 PORTCULLIS_DATA=/var/lib/portcullis
WORKDIR /var/lib/portcullis
# 8080: webhooks; 9090: admin (health, readiness, metrics).
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9090/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve", "--config", "/etc/portcullis/config.yaml", "--log-format", "json"]
