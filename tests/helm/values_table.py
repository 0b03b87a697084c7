"""The Values table of the chart README, generated from the `# --` comments of values.yaml (the
helm-docs convention), so README and values cannot disagree.

    .venv/bin/python -m tests.helm.values_table      # rewrite the table in README.md
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

from tests.helm.chart import CHART_DIR

VALUES = CHART_DIR / "values.yaml"
README = CHART_DIR / "README.md"
START, END = "<!-- values:start -->", "<!-- values:end -->"
KEY_LINE = re.compile(r"^(\s*)([A-Za-z0-9_.\-/]+):")
MAX_INLINE = 60


def documented() -> dict[str, str]:
    """Dotted path -> description, for every key carrying a `# --` comment (continued by the
    plain comment lines right after it)."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in VALUES.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped.removeprefix("# --").strip()]
            continue
        if stripped.startswith("#"):
            if comment:
                comment.append(stripped.lstrip("#").strip())
            continue
        match = KEY_LINE.match(line)
        if stripped.startswith("-") or not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        if comment:
            found[".".join(key for _, key in stack)] = " ".join(comment)
            comment = []
    return found


def leaves(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{path}.")
        else:
            yield path


def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    return loaded


def _default(path: str) -> str:
    value: Any = values()
    for key in path.split("."):
        value = value[key]
    text = json.dumps(value, separators=(", ", ": "))
    return "see values.yaml" if len(text) > MAX_INLINE else f"`{text}`"


def table() -> str:
    rows = ["| Key | Default | Description |", "| --- | --- | --- |"]
    for path, description in documented().items():
        escaped = description.replace("|", r"\|")
        rows.append(f"| `{path}` | {_default(path)} | {escaped} |")
    return "\n".join(rows)


def readme_table() -> str:
    text = README.read_text()
    return text[text.index(START) + len(START) : text.index(END)].strip()


def main() -> None:
    text = README.read_text()
    head, tail = text[: text.index(START) + len(START)], text[text.index(END) :]
    README.write_text(f"{head}\n{table()}\n{tail}")


if __name__ == "__main__":
    main()
