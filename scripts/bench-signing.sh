#!/usr/bin/env bash
# Runs the signing benchmark and prints the median of each case.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked --bench signing -- "$@"
echo
echo "medians (criterion estimates, $(nproc) cores):"
for estimates in target/criterion/*/*/new/estimates.json target/criterion/*/new/estimates.json; do
  [ -f "$estimates" ] || continue
  case_dir=${estimates%/new/estimates.json}
  python3 - "$estimates" "${case_dir#target/criterion/}" <<'PY'
import json, sys
median = json.load(open(sys.argv[1]))["median"]["point_estimate"]
print(f"  {sys.argv[2]:<42} {median / 1000:8.3f} us")
PY
done
