# joincanary: one container per region.
#   docker build -t joincanary .
#   docker run -e REGION=eu-west-1 -e SIM_URL=https://meet.example.com -p 9464:9464 joincanary
# Config is read from /etc/joincanary/config/joincanary.toml and probes from
# /etc/joincanary/probes/*.toml; mount your own over them. Alert state persists in /var/lib/joincanary (mount a volume).
# The image listens on 0.0.0.0:9464 and keeps state in /var/lib/joincanary whatever config is
# mounted: JOINCANARY_LISTEN and JOINCANARY_STATE_DIR are the `run` flags' environment variables
# and win over the config's `listen` / `state_dir` (set either empty to use the config's).
# With TLS or basic auth, set JOINCANARY_WEB_CONFIG_FILE (rather than `--web.config.file`) so
# the HEALTHCHECK reads it too, and JOINCANARY_HEALTHCHECK_USER / _PASSWORD_FILE.

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
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 joincanary \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/joincanary --create-home \
       --shell /usr/sbin/nologin joincanary
COPY --from=build /src/target/release/joincanary /usr/local/bin/joincanary
COPY config/joincanary.toml /etc/joincanary/config/joincanary.toml
COPY probes/ /etc/joincanary/probes/
ENV JOINCANARY_CONFIG=/etc/joincanary/config/joincanary.toml \
    JOINCANARY_LISTEN=0.0.0.0:9464 \
    JOINCANARY_STATE_DIR=/var/lib/joincanary \
    JOINCANARY_LOG_FORMAT=json \
    REGION=local
# Numeric, so Kubernetes' runAsNonRoot can verify it is not root.
USER 10001:10001
EXPOSE 9464
# `healthcheck` asks /healthz where `run` listens, with its TLS and basic auth, within 2 s.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/joincanary", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/joincanary"]
CMD ["run"]
