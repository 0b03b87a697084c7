"""A benchmark's `ragway@REF` gateway runs REF's code, not this checkout's.

`python -m server` puts the current directory ahead of PYTHONPATH, and the benchmarks run from
this checkout, which has its own `server`: until the gateway was started with `-P`, every
"older" gateway of the overhead runs was this one (benchmarks/README.md)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from benchmarks import targets


def test_a_source_tree_gateway_imports_that_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "server").mkdir(parents=True)
    (tree / "server" / "__init__.py").write_text("")
    (tree / "server" / "__main__.py").write_text(
        "import os, server\nprint(server.__file__, os.environ['RAGWAY_CONFIG_FILE'])\n"
    )
    config = tmp_path / "gateway.yaml"
    argv, env, ready_url = targets.gateway_command(config, 18999, tree)
    assert (targets.REPO / "server" / "__main__.py").is_file()  # the name this checkout has too
    done = subprocess.run(
        argv, cwd=targets.REPO, env={**os.environ, **env}, capture_output=True, text=True,
        check=True, timeout=60,
    )  # fmt: skip
    imported, config_file = done.stdout.split()
    assert Path(imported) == tree / "server" / "__init__.py"
    assert config_file == str(config)
    assert ready_url == "http://127.0.0.1:18999/readyz"


def test_this_checkouts_gateway_is_started_as_before(tmp_path: Path) -> None:
    argv, env, _ = targets.gateway_command(tmp_path / "gateway.yaml", 18999, None)
    assert "-P" not in argv
    assert "PYTHONPATH" not in env
    assert argv[1:] == ["-m", "server"]
