#!/usr/bin/env bash
# The one-command demo: installs valkey-server if missing, builds, starts the
# local ElastiCache stand-in (a serverless cache, with the 12-hour rule scaled
# to 8 s), runs examples/serverless.rs against it with credentials from the
# stack's mock ECS task-role endpoint and the lifecycle scaled to seconds,
# prints the example's summary and the stack's counters, and stops the stack.
#
#   localstack/demo.sh [--duration SECS] [--concurrency N]   (default: 40 s, 8 workers)
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--duration 40 --concurrency 8)

scripts/install-servers.sh valkey >/dev/null
cargo build --locked --quiet -p elasticache-localstack --bin elasticache-localstack
cargo build --locked --quiet -p elasticache-iam --example serverless

work=$(mktemp -d)
stack_pid=""
cleanup() {
  if [ -n "$stack_pid" ]; then
    kill "$stack_pid" 2>/dev/null || true
    wait "$stack_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

target/debug/elasticache-localstack --serverless-cache demo-cache --user-id iam-user-01 \
  --region us-east-1 --max-auth-age 8s --credential-lifetime 15m \
  --env-file "$work/stack.env" 2>"$work/stack.log" &
stack_pid=$!
for _ in $(seq 1 300); do
  [ -s "$work/stack.env" ] && break
  if ! kill -0 "$stack_pid" 2>/dev/null; then
    cat "$work/stack.log" >&2
    echo "demo: the local stack did not start" >&2
    exit 1
  fi
  sleep 0.1
done
[ -s "$work/stack.env" ] || { echo "demo: the local stack did not start in 30 s" >&2; exit 1; }

set -a
# shellcheck disable=SC1091
. "$work/stack.env"
set +a
# Credentials from the mock ECS task-role endpoint, through the AWS default
# chain: no static keys, no profile, no instance metadata.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
: >"$work/empty-config"
export AWS_CONFIG_FILE="$work/empty-config" AWS_SHARED_CREDENTIALS_FILE="$work/empty-config"
export AWS_EC2_METADATA_DISABLED=true
export AWS_CONTAINER_CREDENTIALS_FULL_URI="$LOCALSTACK_CONTAINER_CREDENTIALS_URI"
# The lifecycle scaled to the stack's 8-second cut.
export ELASTICACHE_TOKEN_REFRESH_INTERVAL=2s ELASTICACHE_REAUTH_AFTER=4s ELASTICACHE_MAX_CONNECTION_AGE=6s

echo "== examples/serverless ${args[*]} (against the local stack, ECS task-role credentials)" >&2
status=0
target/debug/examples/serverless "${args[@]}" || status=$?
echo "== local stack counters" >&2
python3 -c 'import json, sys, urllib.request; print(json.dumps(json.load(urllib.request.urlopen(sys.argv[1] + "/stats"))))' \
  "$LOCALSTACK_ADMIN_URL" >&2 || true
exit "$status"
