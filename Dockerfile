# A small, non-root image: the release binary on a distroless base (glibc, CA certificates).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY tests ./tests
RUN cargo build --release --locked --bin aws-access-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/aws-access-operator /usr/local/bin/aws-access-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/aws-access-operator"]
CMD ["run"]
