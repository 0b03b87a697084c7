"""Text out of uploaded files: .txt and .md as UTF-8 text, .html with the standard library's
tokenizer, .pdf with pypdf, page by page. Every parser is bounded by `ParseCaps`: the text it
produces (a running total, so a PDF stops at the page that crosses it), PDF pages and HTML
tags. Parsing is CPU-bound; the gateway runs it in its parser pool (server/rag/parse_pool.py).
pypdf is imported when first used, to keep it out of the gateway's start-up."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePath
from typing import Any

from server.errors import InvalidRequest, PayloadTooLarge

# A title longer than this is cut (a document's title may be at most 1000 characters).
MAX_TITLE_CHARS = 1000


@dataclass(frozen=True, slots=True)
class ParsedText:
    text: str
    title: str | None


@dataclass(frozen=True, slots=True)
class ParseCaps:
    max_text_bytes: int = 4 * 1024 * 1024
    max_pdf_pages: int = 2000
    max_html_tags: int = 200_000


_BY_MEDIA_TYPE = {
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/x-markdown": ".md",
    "text/html": ".html",
    "application/pdf": ".pdf",
}
_HIDDEN_HTML = frozenset({"script", "style", "noscript", "template", "head"})
_BLANK_RUNS = re.compile(r"\n{3,}")  # on stripped lines: linear


def _too_large(caps: ParseCaps) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The document's text is larger than {caps.max_text_bytes} bytes (rag.max_document_bytes).",
        param="file",
    )


def _decode(data: bytes, caps: ParseCaps) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"The file is not UTF-8 text (byte {exc.start} is invalid).", param="file"
        ) from exc
    if len(data) > caps.max_text_bytes:
        raise _too_large(caps)
    return text


def _plain(data: bytes, caps: ParseCaps) -> ParsedText:
    return ParsedText(_decode(data, caps), None)


def markdown_title(text: str) -> str | None:
    """The first `# Title` line's title: a linear scan (the regex it replaces was cubic on a
    long run of spaces)."""
    for line in text.splitlines():
        if len(line) < 3 or line[0] != "#" or not line[1].isspace():
            continue
        title = line[1:].strip()
        title = title.rstrip("#").rstrip() or title
        if title:
            return title[:MAX_TITLE_CHARS]
    return None


def _markdown(data: bytes, caps: ParseCaps) -> ParsedText:
    text = _decode(data, caps)
    return ParsedText(text, markdown_title(text))


class _TextCollector(HTMLParser):
    """Visible text and the <title>, in one pass over the tokens, with a tag cap."""

    def __init__(self, caps: ParseCaps):
        super().__init__(convert_charrefs=True)
        self.caps = caps
        self.parts: list[str] = []
        self.size = 0
        self.tags = 0
        self.hidden = 0
        self.in_title = False
        self.title: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += 1
        if self.tags > self.caps.max_html_tags:
            raise InvalidRequest(
                f"The HTML file has more than {self.caps.max_html_tags} tags "
                "(limits.max_html_tags).",
                param="file",
            )
        if tag == "title":
            self.in_title = True
        elif tag in _HIDDEN_HTML:
            self.hidden += 1
        elif tag in {"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"}:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in _HIDDEN_HTML and self.hidden:
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.hidden:
            self.size += len(data)
            if self.size > self.caps.max_text_bytes:
                raise _too_large(self.caps)
            self.parts.append(data)


def _html(data: bytes, caps: ParseCaps) -> ParsedText:
    # Every tag opens with "<" (text must escape it), start and end tags alike: a cheap bound
    # that refuses a flood of tags before tokenizing any of them.
    if data.count(b"<") > 2 * caps.max_html_tags + 1000:
        raise InvalidRequest(
            f"The HTML file has more than {caps.max_html_tags} tags (limits.max_html_tags).",
            param="file",
        )
    collector = _TextCollector(caps)
    collector.feed(data.decode("utf-8", errors="replace"))
    collector.close()
    lines = "\n".join(line.strip() for line in "".join(collector.parts).splitlines())
    text = _BLANK_RUNS.sub("\n\n", lines).strip()
    title = " ".join("".join(collector.title).split())[:MAX_TITLE_CHARS]
    return ParsedText(text, title or None)


def _pdf(data: bytes, caps: ParseCaps) -> ParsedText:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    pages: list[str] = []
    size = 0
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidRequest("The PDF is encrypted.", param="file")
        if len(reader.pages) > caps.max_pdf_pages:
            raise InvalidRequest(
                f"The PDF has {len(reader.pages)} pages; at most {caps.max_pdf_pages} are read "
                "(limits.max_pdf_pages).",
                param="file",
            )
        # Pages that draw the same content stream(s) give the same text: extract it once (a
        # small PDF can point thousands of pages at one large stream).
        seen: dict[object, str] = {}
        for page in reader.pages:
            key = _contents_key(page)
            text = seen.get(key) if key is not None else None
            if text is None:
                text = page.extract_text() or ""
                if key is not None:
                    seen[key] = text
            size += len(text.encode())
            if size > caps.max_text_bytes:
                raise _too_large(caps)
            pages.append(text)
        title = reader.metadata.title if reader.metadata else None
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise InvalidRequest(f"The file is not a readable PDF: {exc}", param="file") from exc
    return ParsedText("\n\n".join(pages), str(title)[:MAX_TITLE_CHARS] if title else None)


def _contents_key(page: Any) -> object | None:
    """The indirect references of a page's content streams and resources, if it has them."""
    from pypdf.generic import ArrayObject, IndirectObject

    def ref(value: Any) -> object | None:
        if isinstance(value, IndirectObject):
            return (value.idnum, value.generation)
        if isinstance(value, ArrayObject) and all(isinstance(v, IndirectObject) for v in value):
            return tuple((v.idnum, v.generation) for v in value)
        return None

    # raw_get: the reference itself; get() would resolve it.
    contents = ref(page.raw_get("/Contents")) if "/Contents" in page else None
    resources = ref(page.raw_get("/Resources")) if "/Resources" in page else None
    return None if contents is None else (contents, resources)


_PARSERS: dict[str, Callable[[bytes, ParseCaps], ParsedText]] = {
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


def parse_file(kind: str, data: bytes, caps: ParseCaps | None = None) -> ParsedText:
    return _PARSERS[kind](data, caps if caps is not None else ParseCaps())
