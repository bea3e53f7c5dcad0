# flotilla: one binary for server, agent and CLI.
#   docker build -t flotilla .
#   docker run --rm flotilla --help

FROM rust:1-bookworm AS build
# The commit `flotilla version` and bench results record (build.rs reads .git when the context
# has it; otherwise pass `--build-arg FLOTILLA_COMMIT=$(git rev-parse HEAD)`).
ARG FLOTILLA_COMMIT=
ENV FLOTILLA_COMMIT=${FLOTILLA_COMMIT}
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin flotilla

# kubectl (for `kubectl kustomize`) and helm, which Debian does not package: release binaries at
# pinned versions, checked against a sha256. Pass the digests to pin them too (recommended:
# `--build-arg KUBECTL_SHA256=... --build-arg HELM_SHA256=...`, from the releases' pages);
# without them the digest published next to each download is used, which catches a corrupt
# download but trusts the release host. TARGETARCH is set by BuildKit (amd64, arm64).
FROM debian:bookworm-slim AS render-tools
ARG TARGETARCH=amd64
ARG KUBECTL_VERSION=v1.33.4
ARG KUBECTL_SHA256=
ARG HELM_VERSION=v3.18.6
ARG HELM_SHA256=
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /tools
RUN set -eu \
 && base="https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl" \
 && curl -fsSLo kubectl "$base" \
 && sum="${KUBECTL_SHA256:-$(curl -fsSL "$base.sha256")}" \
 && echo "$sum  kubectl" | sha256sum -c - \
 && chmod 0755 kubectl \
 && ./kubectl version --client
RUN set -eu \
 && file="helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz" \
 && curl -fsSLo "$file" "https://get.helm.sh/$file" \
 && sum="${HELM_SHA256:-$(curl -fsSL "https://get.helm.sh/$file.sha256sum" | cut -d' ' -f1)}" \
 && echo "$sum  $file" | sha256sum -c - \
 && tar -xzf "$file" --strip-components=1 "linux-${TARGETARCH}/helm" \
 && rm "$file" \
 && ./helm version --short

# The server image: git for GitRepos, kubectl (kustomize) and helm for folders that use them:
# the server finds them on PATH (crates/render/src/tools.rs), so GitRepos work out of the box.
#   docker build --target server -t flotilla-server .
# The Helm chart (deploy/charts/flotilla-server) runs it with a read-only root filesystem and
# HOME=/tmp (an emptyDir), where git and helm keep their config and caches.
FROM debian:bookworm-slim AS server
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=render-tools /tools/kubectl /tools/helm /usr/local/bin/
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
