# joincanary: one container per region.
#   docker build -t joincanary .
#   docker run -e REGION=eu-west-1 -e SIM_URL=https://meet.example.com -p 9464:9464 joincanary
# Config is read from /etc/joincanary/config/joincanary.toml and probes from
# /etc/joincanary/probes/*.toml; mount your own over them. Alert state persists in /var/lib/joincanary (mount a volume).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not refetch and rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
COPY config ./config
COPY probes ./probes
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin joincanary

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/joincanary --create-home joincanary
COPY --from=build /src/target/release/joincanary /usr/local/bin/joincanary
COPY config/joincanary.toml /etc/joincanary/config/joincanary.toml
COPY probes/ /etc/joincanary/probes/
ENV JOINCANARY_CONFIG=/etc/joincanary/config/joincanary.toml \
    JOINCANARY_LISTEN=0.0.0.0:9464 \
    JOINCANARY_STATE_DIR=/var/lib/joincanary \
    JOINCANARY_LOG_FORMAT=json \
    REGION=local
USER joincanary
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9464/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/joincanary"]
CMD ["run"]
