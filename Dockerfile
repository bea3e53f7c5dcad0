# flotilla: one binary for server, agent and CLI.
#   docker build -t flotilla .
#   docker run --rm flotilla --help

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin flotilla

# The server image: git for GitRepos (add kubectl or kustomize, and helm, for folders that use them).
#   docker build --target server -t flotilla-server .
FROM debian:bookworm-slim AS server
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/flotilla /usr/local/bin/flotilla
USER 65532:65532
# Exec form: flotilla runs as PID 1, with no init in between. The kernel drops signals a PID 1
# has no handler for, so this relies on flotilla installing its own SIGTERM and SIGINT handlers
# (crates/cli/src/signals.rs) before it starts: `docker stop` and a pod deletion then drain
# requests, write soft state and release the lease within --shutdown-timeout (25 s, inside
# Kubernetes' 30 s grace period); a second signal stops at once. No --init/tini needed.
ENTRYPOINT ["/usr/local/bin/flotilla"]

# The default image (agent and CLI): no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/flotilla /usr/local/bin/flotilla
USER 65532:65532
# PID 1 as above: the agent handles SIGTERM itself (finishes the pass in progress, exits 0).
ENTRYPOINT ["/usr/local/bin/flotilla"]
