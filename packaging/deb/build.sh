#!/usr/bin/env bash
# Builds the Debian package: target/debian/sipdisp_<version>-<revision>_<arch>.deb.
#
#   bash packaging/deb/build.sh [--deb-revision N]
#
# Installs cargo-deb (crates.io) when missing. Extra arguments go to `cargo deb`.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! cargo deb --version >/dev/null 2>&1; then
  echo "== installing cargo-deb"
  cargo install --locked cargo-deb
fi
cargo deb --locked --strip -p sipdisp "$@"
