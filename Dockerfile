# Passport's container image: `docker build -t <registry>/passport:<tag> .`
# No image is published yet (docs/install.md). The build stage compiles the one `passport`
# binary; the final image is distroless (glibc, CA roots, no shell) and runs as non-root.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p passport-operator --bin passport \
 && install -D target/release/passport /out/passport

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/passport /passport
# 65532 is distroless's `nonroot`; config/manager runs it with a read-only root filesystem.
USER 65532:65532
EXPOSE 8081 9443
ENTRYPOINT ["/passport"]
CMD ["run"]
