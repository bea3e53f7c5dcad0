# flotilla: one binary for server, agent and CLI.
#   docker build -t flotilla .
#   docker run --rm flotilla --help

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin flotilla

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/flotilla /usr/local/bin/flotilla
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/flotilla"]
