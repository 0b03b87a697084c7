"""The attack suite's cases (see benchmarks/attack.py): issue 10's table, then its scope.

Each case sends one hostile request (or a bounded burst) and returns what came back: the
status as text, or "closed" when the server closed the connection without a status line."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

# A case's answer, or its answer and its own time: a burst of connections times each from its
# request to its answer and gives the slowest (opening 200 sockets is the client's time).
Answer = str | tuple[str, float]
Run = Callable[[str, str | None], Awaitable[Answer]]
Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Case:
    name: str
    expect: str  # "4xx", "400", "2xx", "closed", or several joined by " or "
    limit_s: float
    run: Run
    needs_kb: bool = False

    def accepts(self, answer: str) -> bool:
        """`answer`, or each of a burst's answers ("mixed: 408,closed"), is one expected."""
        answers = answer.removeprefix("mixed: ").split(",")
        return all(self._accepts_one(one) for one in answers)

    def _accepts_one(self, answer: str) -> bool:
        for want in self.expect.split(" or "):
            if want == answer or (want.endswith("xx") and answer[:1] == want[0]):
                return True
        return False


async def _post(url: str, path: str, **kwargs: object) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        response = await client.post(path, **kwargs)  # type: ignore[arg-type]
        return str(response.status_code)


async def _get(url: str, path: str, **kwargs: object) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return str((await client.get(path, **kwargs)).status_code)  # type: ignore[arg-type]


def _json(path: str, body: Callable[[str], object], headers: Headers = ()) -> Run:
    """POST the JSON of `body(kb)` (built when the case runs, not at import)."""

    async def run(url: str, kb: str | None) -> str:
        name = kb or "missing"
        content = json.dumps(body(name)).encode()
        sent = [(b"content-type", b"application/json"), *headers]
        return await _post(url, path.replace("{kb}", name), content=content, headers=sent)

    return run


def _upload(name: str, data: Callable[[], bytes], kb_exists: bool, **fields: str) -> Run:
    async def run(url: str, kb: str | None) -> str:
        where = kb if kb_exists and kb else "no-such-kb"
        files = {"file": (name, data())}
        return await _post(url, f"/v1/knowledge_bases/{where}/documents", files=files, data=fields)

    return run


def pdf_file(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF of these objects (numbered from 1, the first the catalog), with a correct
    cross-reference table; `trailer` adds entries to the trailer dictionary."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\n" % (len(objects) + 1, trailer)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def shared_stream_pdf(pages: int, text_bytes: int) -> bytes:
    """A small PDF whose `pages` pages all draw one content stream of `text_bytes` of text:
    the extracted text is pages x text_bytes."""
    line = b"(" + b"A" * 100 + b") Tj 0 -1 Td "
    stream = b"BT /F1 1 Tf " + line * (text_bytes // 100) + b"ET"
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
        b"/Resources << /Font << /F1 4 0 R >> >> >>"
    )
    objects += [page] * pages
    return pdf_file(objects)


async def _raw(url: str, payload: bytes, connections: int = 1) -> Answer:
    """Send `payload` on `connections` sockets (each as soon as it is open) and never finish;
    the answer is the first connection's status line, or "closed"; every connection must be
    closed by the server. With several connections, the time is the slowest one's."""
    parts = urlsplit(url)

    async def one() -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        try:
            writer.write(payload)
            sent = time.perf_counter()
            answer = await _until_closed(reader)
            return answer, time.perf_counter() - sent
        finally:
            writer.close()

    results = await asyncio.gather(*(one() for _ in range(connections)))
    answers = [answer for answer, _ in results]
    statuses = {
        a.split(b" ", 2)[1].decode() if a.startswith(b"HTTP/") else "closed" for a in answers
    }
    status = "mixed: " + ",".join(sorted(statuses)) if len(statuses) > 1 else statuses.pop()
    return status if connections == 1 else (status, max(took for _, took in results))


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read()
    except ConnectionResetError:  # closed with our bytes unread: the kernel resets
        return b""


def _half_open(count: int) -> Run:
    async def run(url: str, kb: str | None) -> Answer:
        return await _raw(url, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n", count)

    return run


def _stalled_bodies(count: int) -> Run:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n"

    async def run(url: str, kb: str | None) -> Answer:
        return await _raw(url, head + b'{"model": ', count)

    return run


def _big_head() -> Run:
    async def run(url: str, kb: str | None) -> Answer:
        return await _raw(url, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 200_000)

    return run


def _deep(levels: int) -> object:
    value: object = 0
    for _ in range(levels):
        value = [value]
    return value


CHAT = "/v1/chat/completions"
DOCS = "/v1/knowledge_bases/{kb}/documents"
QUERY = "/v1/knowledge_bases/{kb}/query"
ONE = [{"role": "user", "content": "x"}]
WORDS = " ".join(f"word{i}" for i in range(600))

CASES = [
    # Issue 10's table.
    Case(
        "embeddings input: 1M nulls",
        "400",
        1,
        _json("/v1/embeddings", lambda kb: {"model": "m", "input": [None] * 1_000_000}),
    ),
    Case(
        "chat messages: 1M nulls",
        "400",
        1,
        _json(CHAT, lambda kb: {"model": "m", "messages": [None] * 1_000_000}),
    ),
    Case(
        "chat field nested 300 deep",
        "400",
        1,
        _json(CHAT, lambda kb: {"model": "m", "messages": [{**ONE[0], "x": _deep(300)}]}),
    ),
    Case(
        "non-ASCII X-Request-Id",
        "4xx",
        1,
        _json(
            CHAT,
            lambda kb: {"model": "no-such-model", "messages": ONE},
            ((b"x-request-id", "é→".encode()),),
        ),
    ),
    Case(
        "documents offset=2^32",
        "400",
        1,
        lambda url, kb: _get(url, f"/v1/knowledge_bases/{kb}/documents?offset=4294967296"),
    ),
    Case(
        ".md title '# a' + 3000 spaces + 'b'",
        "2xx or 4xx",
        2,
        _upload("t.md", lambda: b"# a" + b" " * 3000 + b"b\n\ntext\n", True),
        needs_kb=True,
    ),
    Case(
        "4.5 MB of <b> to a missing KB",
        "404",
        2,
        _upload("x.html", lambda: b"<b>" * 1_500_000, False),
    ),
    Case(
        "4.5 MB of <b> to a KB", "400", 2, _upload("x.html", lambda: b"<b>" * 1_500_000, True), True
    ),
    Case(
        "300 KB metadata value, 16-token chunks",
        "400",
        2,
        _json(DOCS, lambda kb: {"id": "m", "text": WORDS, "metadata": {"v": "x" * 300_000}}),
        needs_kb=True,
    ),
    # Slow clients: many at once are pressure (server/slow_clients.py), closed within a second
    # of stalling; a lone one keeps limits.header_timeout / body_timeout (a phone on a bad link).
    Case("200 half-open connections", "408 or closed", 1, _half_open(200)),
    # The scope's other cases.
    Case(
        "PDF: 500 pages sharing one 100 KB stream",
        "413",
        2,
        _upload("x.pdf", lambda: shared_stream_pdf(500, 100_000), True),
        needs_kb=True,
    ),
    Case(
        "$in with 100k values",
        "400",
        1,
        _json(QUERY, lambda kb: {"query": "q", "where": {"k": {"$in": list(range(100_000))}}}),
        needs_kb=True,
    ),
    Case(
        "$or with 10k clauses",
        "400",
        1,
        _json(
            QUERY, lambda kb: {"query": "q", "where": {"$or": [{"k": i} for i in range(10_000)]}}
        ),
        needs_kb=True,
    ),
    Case(
        "embeddings input: 1M token ids",
        "400",
        1,
        _json("/v1/embeddings", lambda kb: {"model": "m", "input": [1] * 1_000_000}),
    ),
    Case(
        "completion prompt: 100k strings",
        "400",
        1,
        _json("/v1/completions", lambda kb: {"model": "m", "prompt": ["x"] * 100_000}),
    ),
    Case("17 MB body", "413", 2, _json(CHAT, lambda kb: {"model": "m", "x": "y" * 17_000_000})),
    Case("200 KB request head", "431 or closed", 1, _big_head()),
    Case("200 bodies stall after 10 bytes", "408 or closed", 1, _stalled_bodies(200)),
]
