"""scripts/audit_report.py, the verdict of scripts/audit.sh, without the network: what pip-audit
answered counts, the project JSON answers only for locked versions that are the latest, every
other package is named as not audited, and only accepted advisories pass."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit_report.py"


@pytest.fixture
def report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_report", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    latest: dict[str, tuple[str, list[dict[str, Any]]]] = {
        "alpha": ("1.0", [{"id": "GHSA-a", "aliases": ["CVE-1"]}]),
        "beta": ("2.0", []),  # locked at 1.0: the project JSON cannot say
        "gamma": ("3.0", [{"id": "GHSA-g", "aliases": []}]),
    }
    monkeypatch.setattr(module, "project_json", lambda name: latest.get(name, (None, [])))
    monkeypatch.setattr(module, "ACCEPTED", tmp_path / "accepted.txt")
    return module


def _locks(tmp_path: Path) -> list[str]:
    lock = tmp_path / "lock.txt"
    lock.write_text(
        "alpha==1.0 \\\n    --hash=sha256:00\nbeta==1.0\ngamma==3.0\ndelta==4.0\nsolo==5.0\n"
    )
    audited = tmp_path / "pip-audit.json"
    deps = [
        {"name": "solo", "version": "5.0", "vulns": []},
        *({"name": n, "skip_reason": "no answer"} for n in ("alpha", "beta", "gamma", "delta")),
    ]
    audited.write_text(json.dumps({"dependencies": deps}))
    return [str(audited), str(lock)]


def test_unaccepted_findings_fail_and_unanswered_packages_are_named(
    report: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audited, lock = _locks(tmp_path)
    assert report.main(audited, [lock]) == 1
    err = capsys.readouterr().err
    assert "2 known vulnerabilities (2 not accepted) in 3 of 5 locked packages" in err
    assert "could not audit 2 packages" in err
    assert "beta 1.0, delta 4.0" in err


def test_accepted_advisories_pass_by_id_or_alias(
    report: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "accepted.txt").write_text("# reviewed\nCVE-1  # not reachable\nGHSA-g # ok\n")
    audited, lock = _locks(tmp_path)
    assert report.main(audited, [lock]) == 0
    assert "(accepted: not reachable)" in capsys.readouterr().err


def test_no_pip_audit_report_audits_nothing_by_it(
    report: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, lock = _locks(tmp_path)
    report.main(str(tmp_path / "missing.json"), [lock])
    assert "in 2 of 5 locked packages (0 by pip-audit" in capsys.readouterr().err
