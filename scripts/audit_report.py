"""The verdict of scripts/audit.sh: pip-audit's report, completed from PyPI's project JSON.

pip-audit asks PyPI's per-version JSON (/pypi/NAME/VERSION/json) for each locked version. Where
that does not answer (a registry mirror may serve only /pypi/NAME/json), this asks the project
JSON instead: its `vulnerabilities` are those of the project's latest release, so they answer
for a locked version exactly when it is the latest, and for no other. Every dependency that
neither source covers is named as not audited: no answer is never a clean audit.

Advisories accepted after review are listed in requirements/audit-accepted.txt (one id per
line, `#` and the reason after it); they are printed on every run and do not fail it. Exit 1
on any other known vulnerability.

    python scripts/audit_report.py PIP_AUDIT_JSON LOCK_FILE...
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ACCEPTED = Path(__file__).resolve().parent.parent / "requirements" / "audit-accepted.txt"
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)")
Finding = tuple[str, str, str, list[str]]  # name, version, advisory id, its aliases


def pins(lock_files: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in lock_files:
        for line in Path(path).read_text().splitlines():
            match = _PIN.match(line)
            if match:
                found[match[1].lower().replace("_", "-")] = match[2]
    return found


def project_json(name: str) -> tuple[str | None, list[dict[str, Any]]]:
    """The latest version of `name` on PyPI and its advisories; (None, []) without answer."""
    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=30) as r:
            data = json.load(r)
    except (OSError, ValueError):
        return None, []
    return str(data["info"]["version"]), list(data.get("vulnerabilities") or [])


def from_project_json(wanted: dict[str, str]) -> tuple[list[Finding], list[str]]:
    """Advisories of the locked versions that are their project's latest; the others."""
    findings: list[Finding] = []
    unaudited: list[str] = []
    with ThreadPoolExecutor(8) as pool:
        answers = dict(zip(wanted, pool.map(project_json, wanted), strict=True))
    for name, (latest, vulns) in sorted(answers.items()):
        if latest != wanted[name]:
            unaudited.append(f"{name} {wanted[name]}")
            continue
        for v in vulns:
            if not v.get("withdrawn"):
                findings.append((name, wanted[name], v["id"], list(v.get("aliases") or [])))
    return findings, unaudited


def accepted_ids() -> dict[str, str]:
    accepted: dict[str, str] = {}
    for line in ACCEPTED.read_text().splitlines() if ACCEPTED.exists() else []:
        ident, _, reason = line.partition("#")
        if ident.strip():
            accepted[ident.strip()] = reason.strip()
    return accepted


def main(report_path: str, lock_files: list[str]) -> int:
    locked = pins(lock_files)
    try:
        deps = json.loads(Path(report_path).read_text())["dependencies"]
    except (OSError, ValueError, KeyError):
        deps = []  # no report: everything goes to the project JSON
    answered = {d["name"].lower(): d for d in deps if not d.get("skip_reason")}
    findings: list[Finding] = [
        (d["name"], d["version"], v["id"], list(v.get("aliases") or []))
        for d in answered.values()
        for v in d.get("vulns", [])
    ]
    rest = {n: v for n, v in locked.items() if n not in answered}
    more, unaudited = from_project_json(rest)
    findings += more
    accepted = accepted_ids()
    failing = 0
    for name, version, ident, aliases in findings:
        why = next((accepted[i] for i in [ident, *aliases] if i in accepted), None)
        failing += why is None
        verdict = f"accepted: {why}" if why else "NOT accepted"
        print(f"ragway: {name} {version}: {ident} ({verdict})", file=sys.stderr)
    audited = len(locked) - len(unaudited)
    print(
        f"ragway: audit: {len(findings)} known vulnerabilities ({failing} not accepted) in "
        f"{audited} of {len(locked)} locked packages ({len(answered)} by pip-audit, "
        f"{len(rest) - len(unaudited)} by PyPI's project JSON)",
        file=sys.stderr,
    )
    if unaudited:
        print(
            f"ragway: WARNING: could not audit {len(unaudited)} packages (no source answers for "
            f"their locked version): {', '.join(unaudited)}",
            file=sys.stderr,
        )
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
