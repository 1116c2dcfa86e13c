# Warren in a container: the Rust toolchain builds the binary in the first stage; the image is
# Debian slim with the binary, CA certificates (rediss:// and https:// webhooks) and a user.
#
#   docker build -t warren --build-arg WARREN_COMMIT="$(git rev-parse --short HEAD)" .
#   docker run -p 6001:6001 -e WARREN_APPS__0__SECRET=... warren
#   docker run -p 6001:6001 -v "$PWD/warren.toml:/etc/warren/warren.toml:ro" \
#     warren serve --config /etc/warren/warren.toml
#
# WARREN_SERVER__HOST is 0.0.0.0 here (the variables win over the file). `docker stop` sends
# SIGTERM: connections are closed with 4200 and leave their channels, within 10 s.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
# .git is not sent (.dockerignore): the commit that `warren --version` reports comes from here.
ARG WARREN_COMMIT=unknown
RUN WARREN_COMMIT="${WARREN_COMMIT}" CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo cargo build --release --locked -p warren \
 && install -D -m 0755 target/release/warren /out/warren

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin warren
COPY --from=build /out/warren /usr/local/bin/warren
COPY warren.example.toml /usr/share/doc/warren/warren.example.toml
USER 10001:10001
ENV WARREN_SERVER__HOST=0.0.0.0
# WebSocket and HTTP API; Prometheus metrics ([metrics]).
EXPOSE 6001 9601
STOPSIGNAL SIGTERM
# GET /up answers while the process lives; bash's /dev/tcp spares the image an HTTP client.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${WARREN_SERVER__PORT:-6001} && printf 'GET /up HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["warren"]
CMD ["serve"]
