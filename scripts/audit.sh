#!/usr/bin/env bash
# Known vulnerabilities in the locked dependencies: pip-audit over requirements/*.txt, with
# PyPI's advisory data (cached between runs). Fails on any vulnerability found. A dependency
# pip-audit could not ask about (PyPI unreachable, or a build PyPI does not carry, such as torch's
# +cpu) is listed, loudly, but does not fail the run: no answer is not a finding.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${XDG_CACHE_HOME:-$HOME/.cache}/ragway/pip-audit
report=$(mktemp)
trap 'rm -f "$report"' EXIT
set +e
timeout 300 .venv/bin/pip-audit --disable-pip --require-hashes --progress-spinner off \
    --cache-dir "$cache" --format json --output "$report" \
    -r requirements/dev.txt -r requirements/torch-cpu.txt -r requirements/weights.txt 2>/dev/null
status=$?
set -e
exec .venv/bin/python - "$report" "$status" <<'PY'
import json
import sys

path, status = sys.argv[1], int(sys.argv[2])
try:
    with open(path) as f:
        deps = json.load(f)["dependencies"]
except (OSError, ValueError, KeyError):
    print(f"ragway: WARNING: pip-audit gave no report (exit {status}); nothing was audited",
          file=sys.stderr)
    sys.exit(0)
found = [(d["name"], d["version"], v["id"], v.get("fix_versions", []))
         for d in deps for v in d.get("vulns", [])]
skipped = [f"{d['name']} {d.get('version', '')}".strip() for d in deps if d.get("skip_reason")]
for name, version, vuln, fixes in found:
    print(f"ragway: {name} {version}: {vuln} (fixed in {', '.join(fixes) or 'no release'})",
          file=sys.stderr)
audited = len(deps) - len(skipped)
print(f"ragway: pip-audit: {len(found)} known vulnerabilities in {audited} audited "
      f"dependencies", file=sys.stderr)
if skipped:
    print(f"ragway: WARNING: {len(skipped)} dependencies could not be audited (PyPI did not "
          f"answer for them): {', '.join(skipped[:8])}{' ...' if len(skipped) > 8 else ''}",
          file=sys.stderr)
sys.exit(1 if found else 0)
PY
