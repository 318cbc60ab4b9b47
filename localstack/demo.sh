#!/usr/bin/env bash
# The one-command demo: installs valkey-server if missing, builds, starts the
# local ElastiCache stand-in (a serverless cache, with the 12-hour rule scaled
# to 8 s), starts the example HTTP service (examples/service) against it with
# credentials from the stack's mock ECS task-role endpoint and the lifecycle
# scaled to seconds, drives it with the load client (sessions, token
# blacklist and one-time codes, every answer checked), reads /health/redis and
# /metrics, sends SIGTERM and checks the service's exit, and prints a one-line
# JSON summary as the last line on stdout:
#
#   requests, errors, p50_us, p99_us, token_rotations, reauths, replacements,
#   forced_disconnects, auth_refusals (the stand-in's counters),
#   health_status, exit_code (the service's, after SIGTERM), and more.
#
#   localstack/demo.sh [--duration SECS] [--concurrency N]   (default: 40 s, 8 workers)
#
# Exit status 0 when every answer was right, the health check answered 200,
# the stand-in forced no disconnect and the service exited 0.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=40
concurrency=8
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="${2:?--duration needs a number of seconds}"; shift 2 ;;
    --concurrency) concurrency="${2:?--concurrency needs a number}"; shift 2 ;;
    *) echo "demo: unknown argument $1 (use --duration SECS, --concurrency N)" >&2; exit 2 ;;
  esac
done

scripts/install-servers.sh valkey >/dev/null
cargo build --locked --quiet -p elasticache-localstack --bin elasticache-localstack
cargo build --locked --quiet -p elasticache-iam-service --bins

bin="${CARGO_TARGET_DIR:-target}/debug"
work=$(mktemp -d)
stack_pid=""
service_pid=""
cleanup() {
  for pid in "$service_pid" "$stack_pid"; do
    if [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/elasticache-localstack" --serverless-cache demo-cache --user-id iam-user-01 \
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
export LISTEN_ADDR=127.0.0.1:0

echo "== examples/service (against the local stack, ECS task-role credentials)" >&2
"$bin/elasticache-iam-service" >"$work/service.out" 2>"$work/service.log" &
service_pid=$!
address=""
for _ in $(seq 1 600); do
  address=$(sed -n 's/^listening on //p' "$work/service.out")
  [ -n "$address" ] && break
  if ! kill -0 "$service_pid" 2>/dev/null; then
    status=0
    wait "$service_pid" || status=$?
    service_pid=""
    cat "$work/service.log" >&2
    echo "demo: the service did not start (exit $status)" >&2
    exit 1
  fi
  sleep 0.1
done
[ -n "$address" ] || { echo "demo: the service did not listen within 60 s" >&2; exit 1; }

echo "== service-load --duration $duration --concurrency $concurrency (http://$address)" >&2
load_status=0
"$bin/service-load" --url "http://$address" --duration "$duration" \
  --concurrency "$concurrency" >"$work/load.json" || load_status=$?

echo "== SIGTERM" >&2
kill -TERM "$service_pid" 2>/dev/null || true
# It must exit within 10 s; past that it is killed and its status recorded.
for _ in $(seq 1 100); do
  kill -0 "$service_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$service_pid" 2>/dev/null; then
  echo "demo: the service did not exit within 10 s of SIGTERM" >&2
  kill -KILL "$service_pid" 2>/dev/null || true
fi
exit_code=0
wait "$service_pid" || exit_code=$?
service_pid=""
if [ "$exit_code" != 0 ] || [ "$load_status" != 0 ]; then
  tail -n 20 "$work/service.log" >&2
fi

python3 - "$work/load.json" "$exit_code" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.strip()]
summary = json.loads(lines[-1]) if lines else {"errors": None}
summary["exit_code"] = int(sys.argv[2])
print(json.dumps(summary, sort_keys=True))
ok = (summary.get("errors") == 0 and summary.get("health_status") == 200
      and summary.get("forced_disconnects") == 0 and summary["exit_code"] == 0)
sys.exit(0 if ok else 1)
EOF
