"""The chart README lists every value, so it cannot fall behind values.yaml."""

from __future__ import annotations

from tests.helm import values_table


def test_values_table_is_current() -> None:
    assert values_table.readme_table() == values_table.table(), (
        "README.md's Values table is stale: run .venv/bin/python -m tests.helm.values_table"
    )


def test_every_value_is_documented() -> None:
    documented = set(values_table.documented())
    for leaf in values_table.leaves(values_table.values()):
        parts = leaf.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        assert prefixes & documented, f"{leaf} has no `# --` comment (nor has a parent)"


def test_readme_says_the_images_were_not_built_here() -> None:
    readme = values_table.README.read_text()
    assert "images were not built or run" in readme
    for key in ("vllm.workers[].name", "vllm.workers[].model", "vllm.workers[].servedModelName"):
        assert f"`{key}`" in readme
