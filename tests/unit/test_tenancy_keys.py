"""The key file: validation that names the entry, lookup by hash, expiry, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server.tenancy.keys import (
    KeyFileError,
    KeyRing,
    hash_key,
    parse_entries,
    read_entries,
    write_entries,
)
from server.tenancy.principal import KbAccess, Principal

GOOD = "a" * 64


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"keys": [{"name": "ok", "sha256": GOOD}, {"name": "bad", "sha256": GOOD,
                                                      "limits": {"rpm": -1}}]},
         "entry 1 ('bad'): limits.rpm"),
        ({"keys": [{"name": "kb", "sha256": GOOD, "knowledge_bases": {"docs": "owner"}}]},
         "entry 0 ('kb'): knowledge_bases.docs"),
        ({"keys": [{"name": "s", "sha256": GOOD, "scopes": ["x"]}]}, "entry 0 ('s'): scopes"),
        ({"keys": [{"name": "h", "sha256": "plain-key"}]}, "entry 0 ('h'): sha256"),
        ({"keys": [{"name": "d", "sha256": GOOD}, {"name": "d", "sha256": "b" * 64}]},
         "'d' appears twice"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
)  # fmt: skip
def test_bad_entries_are_named(document: object, message: str) -> None:
    with pytest.raises(KeyFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_entries(document, "keys.yaml")


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        read_entries(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("keys: [unclosed\n")
    with pytest.raises(KeyFileError, match="not valid YAML"):
        read_entries(bad)


def test_lookup_by_hash_and_expiry() -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    entries = parse_entries(
        {"keys": [
            {"name": "live", "sha256": hash_key("k1"), "knowledge_bases": {"team-*": "write"}},
            {"name": "old", "sha256": hash_key("k2"), "expires": past.isoformat()},
        ]},
        "keys.yaml",
    )  # fmt: skip
    ring = KeyRing(entries)
    live = ring.lookup("k1")
    assert isinstance(live, Principal)
    assert live.name == "live"
    assert ring.lookup("k2") is None
    assert ring.lookup("k3") is None
    assert live.may("team-a", KbAccess.READ)
    assert live.may("team-a", KbAccess.WRITE)
    assert not live.may("team-a", KbAccess.ADMIN)
    assert not live.may("other", KbAccess.READ)
    assert live.fairness_id == "live"
    assert live.priority == "standard"
    # A key found once is remembered, and still expires.
    assert ring.lookup("k1") is live
    assert ring.lookup("k1", now=datetime.now(UTC) + timedelta(days=1)) is live
    soon = datetime.now(UTC) + timedelta(hours=1)
    ring = KeyRing(parse_entries(
        {"keys": [{"name": "soon", "sha256": hash_key("k4"), "expires": soon.isoformat()}]},
        "keys.yaml",
    ))  # fmt: skip
    assert ring.lookup("k4") is not None
    assert ring.lookup("k4", now=soon) is None
    assert ring.lookup("k4") is not None


def _ragway(*args: str, keys: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from ragway.cli import main; main()", "keys", *args,
         "--file", str(keys)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_keys_cli_create_list_revoke(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    made = _ragway("create", "team-a", "--models", "smol*", "--kb", "docs:write", "--rpm", "10",
                   keys=keys)  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("sk-ragway-")
    assert key not in keys.read_text()
    principal = KeyRing(read_entries(keys)).lookup(key)
    assert principal is not None
    assert principal.limits.rpm == 10
    assert principal.may("docs", KbAccess.WRITE)
    assert principal.may_use_model("smollm2-135m")
    listed = _ragway("list", keys=keys)
    assert "team-a" in listed.stdout
    assert "rpm=10" in listed.stdout
    assert key not in listed.stdout
    assert _ragway("create", "team-a", keys=keys).returncode != 0
    bad = _ragway("create", "b", "--tpm", "-5", keys=keys)
    assert bad.returncode != 0
    assert "limits.tpm" in bad.stderr
    assert _ragway("revoke", "team-a", keys=keys).returncode == 0
    assert read_entries(keys) == []


def test_gateway_refuses_to_start_with_a_bad_key_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"keys:\n  - name: neg\n    sha256: {GOOD}\n    limits: {{tpm: -3}}\n")
    env = {"RAGWAY_AUTH__KEYS_FILE": str(keys), "PATH": "/usr/bin:/bin"}

    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "server"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "entry 0 ('neg'): limits.tpm" in done.stderr


def test_up_auth_banner_prints_a_working_key(tmp_path: Path) -> None:
    import argparse

    from ragway.cli import _auth_line, example_commands
    from ragway.keys_cli import fresh_local_key

    keys = tmp_path / "keys.yaml"
    write_entries(keys, parse_entries({"keys": [{"name": "other", "sha256": GOOD}]}, "x"))
    first = fresh_local_key(keys)
    second = fresh_local_key(keys)  # a second `ragway up --auth` replaces the first key
    ring = KeyRing(read_entries(keys))
    assert ring.lookup(first) is None
    principal = ring.lookup(second)
    assert principal is not None
    assert principal.admin
    assert ring.names == ("other", "ragway-up")
    curl, sdk = example_commands("http://127.0.0.1:8000/v1", "m", second)
    assert f"Authorization: Bearer {second}" in curl
    assert f'api_key="{second}"' in sdk
    args = argparse.Namespace(host="127.0.0.1", port=8000, keys_file=keys, run_dir=None,
                              data_dir=tmp_path)  # fmt: skip
    assert second in _auth_line(args, second)
    assert "OFF" in _auth_line(args, None)
