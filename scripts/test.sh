#!/usr/bin/env bash
# The test command: installs what a fresh machine lacks (valkey-server,
# redis-server / redis-cli, AWS's Python toolkit for the interop test), then runs
# the whole workspace's tests: unit, integration (against the local stack and a
# real Valkey), and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh >/dev/null
cargo test --workspace --all-features --locked "$@"
