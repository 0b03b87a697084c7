#!/usr/bin/env bash
# The test command (README, .ci/run): install what is missing, then lint, type-check and test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
bin=.venv/bin
start=$SECONDS
"$bin/ruff" check .
"$bin/ruff" format --check .
"$bin/mypy"
echo "ragway: lint and types ok in $((SECONDS - start)) s" >&2
# pytest exits 5 when it collects nothing; that is a failure here too, so no special case.
exec "$bin/python" -m pytest "$@"
