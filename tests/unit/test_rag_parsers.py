"""Text extraction from each supported file type, and clear 400s for the rest."""

from __future__ import annotations

import pytest

from server.errors import InvalidRequest
from server.rag.parsers import file_kind, parse_file
from tests.fakes.documents import HTML, MARKDOWN, make_pdf


def test_text_and_markdown() -> None:
    assert parse_file(".txt", "plain text ü".encode()).text == "plain text ü"
    parsed = parse_file(".md", MARKDOWN)
    assert parsed.title == "Setup guide"
    assert "pip install ragway" in parsed.text


def test_html_keeps_visible_text_only() -> None:
    parsed = parse_file(".html", HTML)
    assert parsed.title == "Returns policy"
    assert "Items can be returned within" in parsed.text
    assert "30 days" in parsed.text
    assert "secret" not in parsed.text
    assert "color" not in parsed.text


def test_pdf() -> None:
    parsed = parse_file(".pdf", make_pdf(["The code is QX-4471-ZT.", "Second line."], "Codes"))
    assert "QX-4471-ZT" in parsed.text
    assert "Second line." in parsed.text
    assert parsed.title == "Codes"


@pytest.mark.parametrize(
    ("filename", "media_type", "kind"),
    [
        ("a.TXT", None, ".txt"),
        ("notes.markdown", None, ".markdown"),
        ("page.htm", "application/octet-stream", ".htm"),
        ("blob", "application/pdf", ".pdf"),
        (None, "text/markdown; charset=utf-8", ".md"),
    ],
)
def test_kind_from_name_or_media_type(
    filename: str | None, media_type: str | None, kind: str
) -> None:
    assert file_kind(filename, media_type) == kind


@pytest.mark.parametrize(("filename", "media_type"), [("x.docx", None), ("x", None), (None, "a/b")])
def test_unsupported_types_are_400(filename: str | None, media_type: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        file_kind(filename, media_type)
    assert caught.value.code == "unsupported_file_type"


@pytest.mark.parametrize(
    ("kind", "data"),
    [(".txt", b"\xff\xfe\x00bad"), (".pdf", b"%PDF-1.4 not really"), (".pdf", b"")],
)
def test_unreadable_files_are_400(kind: str, data: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_file(kind, data)
