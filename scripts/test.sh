#!/usr/bin/env bash
# The test command: the whole workspace's tests, unit, integration and doc.
# Installs what a fresh machine lacks before running them (nothing beyond the
# Rust toolchain is needed yet).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-features --locked "$@"
