"""Text out of uploaded files: .txt and .md as UTF-8 text, .html with Beautiful Soup, .pdf with
pypdf. Parsing is CPU-bound; callers run it off the event loop. The two parsers are imported
when first used, like chromadb (see store.py), to keep them out of the gateway's start-up."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

from server.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class ParsedText:
    text: str
    title: str | None


_BY_MEDIA_TYPE = {
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/x-markdown": ".md",
    "text/html": ".html",
    "application/pdf": ".pdf",
}
_HIDDEN_HTML = ("script", "style", "noscript", "template", "head")
_BLANK_RUNS = re.compile(r"\n\s*\n\s*\n+")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"The file is not UTF-8 text (byte {exc.start} is invalid).", param="file"
        ) from exc


def _plain(data: bytes) -> ParsedText:
    return ParsedText(_decode(data), None)


def _markdown(data: bytes) -> ParsedText:
    text = _decode(data)
    heading = re.search(r"^#\s+(.+?)\s*#*\s*$", text, re.MULTILINE)
    return ParsedText(text, heading.group(1) if heading else None)


def _html(data: bytes) -> ParsedText:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup.find_all(_HIDDEN_HTML):
        tag.decompose()
    text = soup.get_text("\n")
    lines = "\n".join(line.strip() for line in text.splitlines())
    return ParsedText(_BLANK_RUNS.sub("\n\n", lines), title or None)


def _pdf(data: bytes) -> ParsedText:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidRequest("The PDF is encrypted.", param="file")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise InvalidRequest(f"The file is not a readable PDF: {exc}", param="file") from exc
    return ParsedText("\n\n".join(pages), str(title) if title else None)


_PARSERS: dict[str, Callable[[bytes], ParsedText]] = {
    ".txt": _plain,
    ".text": _plain,
    ".md": _markdown,
    ".markdown": _markdown,
    ".html": _html,
    ".htm": _html,
    ".pdf": _pdf,
}
SUPPORTED_SUFFIXES = frozenset(_PARSERS)


def file_kind(filename: str | None, media_type: str | None) -> str:
    """The parser's key for a file: its suffix, else its media type; 400 when unsupported."""
    suffix = PurePath(filename or "").suffix.lower()
    if not suffix and media_type:
        suffix = _BY_MEDIA_TYPE.get(media_type.split(";")[0].strip().lower(), "")
    if suffix not in _PARSERS:
        shown = suffix or media_type or "unknown"
        raise InvalidRequest(
            f"Unsupported file type {shown!r}; supported: {', '.join(sorted(_PARSERS))}.",
            param="file",
            code="unsupported_file_type",
        )
    return suffix


def parse_file(kind: str, data: bytes) -> ParsedText:
    return _PARSERS[kind](data)
