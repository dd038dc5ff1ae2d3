#!/usr/bin/env bash
# Runs sipdisp's whole test suite on a fresh Debian 12 machine with a Rust toolchain.
#
# It installs the real peers the tests talk to (sipp, Kamailio, Prometheus) from Debian when
# they are missing, then runs formatting and lint checks and every test with cargo-nextest
# (cargo test when nextest is not installed).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v kamailio >/dev/null 2>&1 || need+=(kamailio)
command -v kamcmd >/dev/null 2>&1 || need+=(kamailio)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# Database sources (tests/it/db_e2e.rs): real servers and Kamailio's database modules.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v mariadbd >/dev/null 2>&1 || need+=(mariadb-server)
for m in sqlite postgres mysql; do
  [ -e "/usr/lib/x86_64-linux-gnu/kamailio/modules/db_$m.so" ] || need+=("kamailio-$m-modules")
done
# The .deb install test (packaging/deb/test-install.sh).
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v curl >/dev/null 2>&1 || need+=(curl)
# The container test (packaging/container/test-image.sh).
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
# The appliance test (packaging/appliance/).
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v bc >/dev/null 2>&1 || need+=(bc)
command -v sfdisk >/dev/null 2>&1 || need+=(fdisk)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "== installing ${need[*]} (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# No module of src/ imports one that imports it back (the shared tool, when checked out
# beside the repository as in CI).
if [ -f ../shared/tools/circles.py ]; then
  echo "== import circles"
  python3 ../shared/tools/circles.py src
fi
# The fuzz targets (run by hand with cargo-fuzz, README "Fuzzing") must keep compiling.
echo "== fuzz targets compile"
cargo check --locked --manifest-path parser/fuzz/Cargo.toml --bins
cargo check --locked --manifest-path tests/fuzz/Cargo.toml --bins
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --locked --no-fail-fast
  cargo test --workspace --all-features --locked --doc
else
  cargo test --workspace --all-features --locked
fi
# The README's commands, run as written (builds the release binary the README uses).
echo "== README commands"
python3 scripts/readme_check.py
# The Debian package: built, lintian-clean, installed and booted in a Debian 12 root,
# upgraded and purged (needs root for debootstrap and systemd-nspawn).
echo "== .deb install test"
if [ "$(id -u)" = 0 ]; then
  bash packaging/deb/test-install.sh
else
  sudo bash packaging/deb/test-install.sh
fi
# The container image: built with buildah from the .deb, run under podman with the default
# seccomp profile (mmsg) and with the shipped io_uring profile.
echo "== container test"
if [ "$(id -u)" = 0 ]; then
  bash packaging/container/test-image.sh
else
  sudo bash packaging/container/test-image.sh
fi
# The appliance: built from Debian packages and the .deb, booted in qemu (TCG), calls from
# the host through it.
echo "== appliance test"
if [ "$(id -u)" = 0 ]; then
  bash packaging/appliance/build.sh
else
  sudo bash packaging/appliance/build.sh
fi
bash packaging/appliance/test-boot.sh
