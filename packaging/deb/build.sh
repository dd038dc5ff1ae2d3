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
# Every database driver goes into the package (SQLite is a default feature; PostgreSQL and
# MySQL/MariaDB are opt-in for source builds). The man page and shell completions come from
# the CLI definition itself.
FEATURES=postgres,mysql
cargo build --release --locked -p sipdisp --bin sipdisp --features "$FEATURES"
mkdir -p target/assets
target/release/sipdisp generate man >target/assets/sipdisp.1
target/release/sipdisp generate bash >target/assets/sipdisp.bash
target/release/sipdisp generate zsh >target/assets/_sipdisp
target/release/sipdisp generate fish >target/assets/sipdisp.fish
cargo deb --locked --strip -p sipdisp --features "$FEATURES" "$@"
