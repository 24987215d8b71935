# kmscodec container image: a static-ish glibc binary on distroless, non-root, no shell.
# Not built in CI (no Docker engine runs there); `docker build -t kmscodec .` builds it.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin kmscodec \
 && strip target/release/kmscodec

# distroless/cc: glibc and CA certificates (for Vault and AWS KMS over TLS), nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/kmscodec /usr/local/bin/kmscodec
USER nonroot:nonroot
# codec HTTP, gRPC, admin (metrics and probes)
EXPOSE 8089 8090 9464
ENTRYPOINT ["/usr/local/bin/kmscodec"]
CMD ["serve", "--config", "/etc/kmscodec/kmscodec.toml"]
