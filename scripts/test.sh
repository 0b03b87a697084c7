#!/usr/bin/env bash
# The test command (README, .ci/run): install what is missing, then lint, type-check and test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# The tests of state shared by replicas start a real redis-server of their own (Debian's package).
if ! command -v redis-server >/dev/null; then
    echo "ragway: installing redis-server for the tests" >&2
    if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq redis-server >/dev/null
fi
bin=.venv/bin
start=$SECONDS
"$bin/ruff" check .
"$bin/ruff" format --check .
"$bin/mypy"
echo "ragway: lint and types ok in $((SECONDS - start)) s" >&2
scripts/audit.sh
# pytest exits 5 when it collects nothing; that is a failure here too, so no special case.
exec "$bin/python" -m pytest "$@"
