# proxyscope in a container: a Rust builder stage, then a slim Debian runtime with only libpcap.
#
#   docker build -t proxyscope .
#   docker run --rm -v "$PWD:/data" proxyscope analyze /data/capture.pcapng
#   docker run --rm --net=host --cap-add=NET_RAW --cap-add=NET_ADMIN proxyscope live -i any
#
# The runtime image matches the builder's Debian (bookworm), so the libpcap the binary was linked
# against is the one it loads.
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpcap-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build reads (see .dockerignore): the manifest, the lock file, the sources and
# the benchmark the manifest declares, and lab/ because cargo loads every workspace member. The
# image ships the analyzer only: the proxy lab (proxyscope-lab) is a tool to make captures with.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY lab ./lab
RUN cargo build --release --locked -p proxyscope --bin proxyscope \
    && install -D target/release/proxyscope /out/proxyscope \
    && /out/proxyscope completions bash > /out/proxyscope.bash \
    && mkdir -p /out/man1 && /out/proxyscope manpage --dir /out/man1

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpcap0.8 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/proxyscope /usr/local/bin/proxyscope
COPY --from=build /out/proxyscope.bash /usr/share/bash-completion/completions/proxyscope
COPY --from=build /out/man1/ /usr/local/share/man/man1/
# Captures are mounted here for `analyze` and `timeline`. `live -w` writes as `nobody` unless
# given `--user root`: mount a directory it can write.
WORKDIR /data
# Runs as root so that `live` can open the device; it then drops every capability and switches to
# `nobody` (see README, "Live capture"). Offline commands need no privilege: `--user` on docker run
# is fine for them.
ENTRYPOINT ["proxyscope"]
CMD ["--help"]
