# tensorlet in a slim image:
#   docker build -t tensorlet:0.1.0 .      (or `podman build`, `buildah bud`)
# Stage `build` builds the release binary with the toolchain of
# rust-toolchain.toml and its wasm targets (build.rs builds the bundled
# plugins); the last stage is Debian slim with the binary, CA certificates
# (HTTPS registries) and the Vulkan loader (`--device gpu` with the node's
# driver), run as an unprivileged user. `--build-arg BINARY_FROM=host` takes an
# already built binary, `./tensorlet` in the build context, instead of
# building one (what CI does: tests/image.rs). deploy/ runs it on Kubernetes;
# docs/fleet.md says what is tested.
ARG BINARY_FROM=build

FROM docker.io/library/rust:1.95-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN rustup target add wasm32-unknown-unknown wasm32-wasip2 \
 && cargo build --release --locked --bin tensorlet \
 && install -s -m 0755 target/release/tensorlet /usr/local/bin/tensorlet

FROM scratch AS host
COPY tensorlet /usr/local/bin/tensorlet

FROM ${BINARY_FROM} AS binary

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libvulkan1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tensorlet --create-home tensorlet
COPY --from=binary /usr/local/bin/tensorlet /usr/local/bin/tensorlet
USER 10001
ENV TENSORLET_HOME=/var/lib/tensorlet
# OIP over HTTP and over gRPC (the admin endpoint stays on loopback).
EXPOSE 8080 9000
ENTRYPOINT ["tensorlet"]
CMD ["serve", "--addr", "0.0.0.0:8080", "--grpc-addr", "0.0.0.0:9000"]
