# sipdisp container image: a multi-stage build to a small, non-root image.
#
#   docker build -t sipdisp .
#   docker run --rm -p 5060:5060/udp -v $PWD/sysconfig:/etc/sipdisp sipdisp
#
# Docker's default seccomp profile refuses io_uring: sipdisp then falls back to
# recvmmsg/sendmmsg and logs one line saying so. To use io_uring, run with the seccomp profile
# packaging/container/seccomp-io_uring.json (`--security-opt seccomp=packaging/container/seccomp-io_uring.json`).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sipdisp --bin sipdisp

FROM debian:bookworm-slim
RUN useradd --system --no-create-home --shell /usr/sbin/nologin sipdisp \
 && mkdir -p /etc/sipdisp && chown sipdisp:sipdisp /etc/sipdisp
COPY --from=build /src/target/release/sipdisp /usr/bin/sipdisp
# In a container the default loopback listener is useless: the container's configuration
# listens on every address and advertises the container's name (mount your own to change it).
COPY packaging/container/sipdisp.toml sysconfig/dispatcher.list /etc/sipdisp/
USER sipdisp
EXPOSE 5060/udp
ENTRYPOINT ["/usr/bin/sipdisp"]
CMD ["run", "--config", "/etc/sipdisp/sipdisp.toml"]
