# ferrolb's image: ferrolb-controller and ferrolb-speaker on a distroless
# base (glibc and libgcc, no shell), running as nobody. deploy/ferrolb.yaml
# runs the speaker as root with only NET_RAW, which its ARP/NDP sockets need.
#
#   docker build -t localhost/ferrolb:0.1.0 .
#
# scripts/image ferrolb builds the same binaries into an image without a
# container engine (the binaries plus the libraries they load).
FROM docker.io/library/rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ferrolb-controller -p ferrolb-speaker --bins

FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/target/release/ferrolb-controller /src/target/release/ferrolb-speaker /usr/local/bin/
USER 65534:65534
ENTRYPOINT ["ferrolb-controller"]
