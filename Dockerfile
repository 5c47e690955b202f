# zajel-signal in a container: a build stage with the Rust toolchain, a small runtime stage.
#   docker build -t zajel-signal .
#   docker run -d --name zajel -p 8080:8080/tcp -p 4433:4433/udp -v zajel-data:/data \
#       --stop-timeout 20 zajel-signal
# See deploy/README.md for TLS, the reverse proxy and QUIC.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# No debug information in the shipped binary (the release profile keeps it for profiling).
RUN CARGO_PROFILE_RELEASE_DEBUG=false cargo build --release --locked --bin zajel-signal

FROM debian:bookworm-slim
# ca-certificates: the system's roots for the bootstrap directory (Mozilla's are built in too).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin zajel \
    && mkdir /data && chown zajel:zajel /data && chmod 0700 /data
COPY --from=build /src/target/release/zajel-signal /usr/local/bin/zajel-signal
USER zajel
WORKDIR /data
# The identity key, the development certificate and the dead drops: keep them across containers.
VOLUME /data
# IPv4 for QUIC: containers often have no IPv6, where the default [::] cannot be bound.
ENV ZAJEL_DATA_DIR=/data \
    ZAJEL_QUIC_LISTEN=0.0.0.0:4433 \
    RUST_LOG=info
EXPOSE 8080/tcp 4433/udp
# /ready answers 200 while serving (503 while draining or, in cluster mode, without Redis). Plain HTTP
# on the TCP port; with --ws-tls, replace this check (see deploy/README.md).
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 CMD ["bash", "-c", \
    "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# SIGTERM drains (--drain-secs, 10 s); give docker stop more than that (--stop-timeout 20).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/zajel-signal"]
