"""`ragway keys create|list|revoke`: the gateway's key file, edited in place.

The key is printed once, at creation; the file keeps only its SHA-256. A running gateway
picks the change up within `auth.reload_interval` seconds, without a restart.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from server.tenancy.keys import KeyEntry, KeyFileError, hash_key, new_key, read_entries
from server.tenancy.keys import write_entries as write_key_file

COMMANDS = ("keys",)
KEYS_FILE_ENV = "RAGWAY_AUTH__KEYS_FILE"


class KeysError(RuntimeError):
    """Stops the command; the message says why."""


def default_keys_file(data_dir: Path) -> Path:
    env = os.environ.get(KEYS_FILE_ENV)
    return Path(env) if env else data_dir / "keys.yaml"


def register(sub: Any, data_dir: Path) -> None:
    keys = sub.add_parser("keys", help="create, list or revoke API keys in the key file")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; prints it once")
    create.add_argument("name")
    create.add_argument("--models", nargs="+", default=["*"], help="model names or globs")
    create.add_argument("--kb", action="append", default=[], metavar="NAME:read|write|admin",
                        help="knowledge-base access (repeatable; NAME may be a glob)")  # fmt: skip
    for flag in ("rpm", "tpm", "tokens-per-day", "concurrency", "max-tokens"):
        create.add_argument(f"--{flag}", type=int)
    create.add_argument("--admin", action="store_true", help="may do everything")
    create.add_argument("--shared-cache", action="store_true",
                        help="share the engines' prefix cache with other tenants")  # fmt: skip
    create.add_argument("--allow-field", action="append", default=[],
                        help="a vLLM extension field this key may send")  # fmt: skip
    create.add_argument("--expires", type=datetime.fromisoformat, help="ISO 8601 date/time")
    keys_sub.add_parser("list", help="list keys (names, scopes, limits; never the keys)")
    revoke = keys_sub.add_parser("revoke", help="remove a key")
    revoke.add_argument("name")
    for parser in keys_sub.choices.values():
        parser.add_argument("--file", type=Path, default=default_keys_file(data_dir),
                            help="the key file (default: $RAGWAY_AUTH__KEYS_FILE or "
                                 "DATA_DIR/keys.yaml)")  # fmt: skip


def _entries(path: Path) -> list[KeyEntry]:
    if not path.exists():
        return []
    try:
        return read_entries(path)
    except KeyFileError as exc:
        raise KeysError(str(exc)) from None


def _kb_scopes(specs: list[str]) -> dict[str, str]:
    scopes = {}
    for spec in specs:
        name, sep, access = spec.rpartition(":")
        if not sep or not name:
            raise KeysError(f"--kb {spec!r}: expected NAME:read, NAME:write or NAME:admin")
        scopes[name] = access
    return scopes


def create_key(path: Path, args: argparse.Namespace) -> str:
    """Add an entry for a fresh key; the key."""
    entries = _entries(path)
    if any(e.name == args.name for e in entries):
        raise KeysError(f"a key named {args.name!r} already exists in {path}")
    key = new_key()
    limits = {
        "rpm": args.rpm, "tpm": args.tpm, "tokens_per_day": args.tokens_per_day,
        "concurrency": args.concurrency, "max_tokens": args.max_tokens,
    }  # fmt: skip
    try:
        entry = KeyEntry.model_validate(
            {
                "name": args.name,
                "sha256": hash_key(key),
                "admin": args.admin,
                "models": args.models,
                "knowledge_bases": _kb_scopes(args.kb),
                "limits": {k: v for k, v in limits.items() if v is not None},
                "expires": args.expires,
                "shared_cache": args.shared_cache,
                "allow_fields": args.allow_field,
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise KeysError(f"{where}: {first['msg']}") from None
    write_key_file(path, [*entries, entry])
    return key


def run(args: argparse.Namespace) -> int:
    path: Path = args.file
    if args.keys_command == "create":
        key = create_key(path, args)
        print(f"created key {args.name!r} in {path}; it is shown only this once:\n{key}")
    elif args.keys_command == "list":
        for e in _entries(path):
            scopes = "admin" if e.admin else f"models={','.join(e.models)}"
            if e.knowledge_bases:
                scopes += " kb=" + ",".join(f"{k}:{v}" for k, v in e.knowledge_bases.items())
            limits = " ".join(f"{k}={v}" for k, v in e.limits.model_dump().items() if v is not None)
            expires = f" expires={e.expires.isoformat()}" if e.expires else ""
            print(f"{e.name}\t{scopes}\t{limits or 'no limits'}{expires}")
    else:
        entries = _entries(path)
        kept = [e for e in entries if e.name != args.name]
        if len(kept) == len(entries):
            raise KeysError(f"no key named {args.name!r} in {path}")
        write_key_file(path, kept)
        print(f"revoked key {args.name!r}")
    return 0


LOCAL_KEY_NAME = "ragway-up"


def fresh_local_key(path: Path) -> str:
    """`ragway up --auth`: a new admin key named `ragway-up` in the key file (replacing the
    one an earlier run made; other entries stay), so the banner can print a working key."""
    key = new_key()
    entry = KeyEntry(name=LOCAL_KEY_NAME, sha256=hash_key(key), admin=True)
    kept = [e for e in _entries(path) if e.name != LOCAL_KEY_NAME]
    write_key_file(path, [*kept, entry])
    return key
