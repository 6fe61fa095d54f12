# hookrelay's container image.
#
#   podman build -t hookrelay .          (or docker build)
#
# Two stages: a Rust builder, then a minimal runtime holding the binary alone. Both base
# images are build arguments, so a registry mirror, a pinned digest or a base image built
# locally (scripts/test-container builds one from Debian packages) can stand in:
#
#   --build-arg BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
#   --build-arg RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
#
# The runtime needs glibc and libgcc_s (distroless `cc` has both) and nothing else: no
# shell, no CA bundle (Mozilla's roots are compiled into the binary; the system's are
# added when the base has some). `--build-arg BINARY=prebuilt` takes the binary from
# `dist/hookrelay` in the build context instead of compiling it (a binary built on the
# host for the same libc, as the container test does; `dist/state` is an empty directory).

ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARY=compiled

FROM ${BUILDER_IMAGE} AS compiled
# Pingora's build needs cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p hookrelay \
 && install -D -m 0755 target/release/hookrelay /out/hookrelay \
 && install -d /out/state

FROM scratch AS prebuilt
COPY dist/hookrelay /out/hookrelay
COPY dist/state /out/state

FROM ${BINARY} AS binary

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="hookrelay" \
      org.opencontainers.image.description="Notification callback sidecar: verifies provider callbacks, normalizes them into one webhook payload and delivers them durably." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/hookrelay/hookrelay" \
      org.opencontainers.image.documentation="https://github.com/hookrelay/hookrelay#run-in-kubernetes"
COPY --from=binary /out/hookrelay /usr/local/bin/hookrelay
# The example configuration runs as is (public development secrets; its store is ./data,
# in the working directory below). Mount your own at /etc/hookrelay.
COPY config/hookrelay.example.yaml /etc/hookrelay/hookrelay.yaml
# Non-root (distroless's `nonroot`); the store is the only place it writes, so the root
# filesystem can be read-only.
COPY --from=binary --chown=65532:65532 /out/state /var/lib/hookrelay
WORKDIR /var/lib/hookrelay
USER 65532:65532
VOLUME ["/var/lib/hookrelay"]
# Public listener (providers) and admin API (probes, metrics).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/hookrelay"]
CMD ["run", "-c", "/etc/hookrelay/hookrelay.yaml"]
