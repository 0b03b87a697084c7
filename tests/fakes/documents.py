"""Small documents of every supported type, made in code (no binary fixtures in the repo)."""

from __future__ import annotations

from benchmarks.attack_cases import pdf_file


def make_pdf(lines: list[str], title: str | None = None) -> bytes:
    """A one-page PDF whose text pypdf can extract, with a correct cross-reference table."""
    text = " ".join(f"({line.replace('(', '[').replace(')', ']')}) Tj 0 -16 Td" for line in lines)
    stream = f"BT /F1 12 Tf 72 720 Td {text} ET".encode()
    info = f"<< /Title ({title}) >>" if title else "<< >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        info.encode(),
    ]
    return pdf_file(objects, b" /Info 6 0 R")


HTML = b"""<!doctype html>
<html><head><title>Returns policy</title><style>p { color: red }</style>
<script>var secret = "not text";</script></head>
<body><h1>Returns</h1><p>Items can be returned within <b>30 days</b>.</p>
<nav>Home | About</nav></body></html>"""

MARKDOWN = b"# Setup guide\n\nInstall with `pip install ragway`.\n\n## Next\n\nRun it.\n"
