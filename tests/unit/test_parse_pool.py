"""The parser pool (server/rag/parse_pool.py): parses in its own processes, turns refusals into
the right errors, and bounds a parse's time inside the process."""

from __future__ import annotations

import pytest

from server.errors import InvalidRequest, PayloadTooLarge
from server.rag.parse_pool import ParserPool
from server.rag.parsers import ParseCaps

MIB = 1024 * 1024


async def test_parses_and_refuses_in_the_pool() -> None:
    pool = ParserPool(1, 30, 1024 * MIB, ParseCaps(max_text_bytes=1000, max_html_tags=1000))
    try:
        parsed = await pool.parse(".md", b"# Title\n\nbody")
        assert (parsed.title, parsed.text) == ("Title", "# Title\n\nbody")
        with pytest.raises(PayloadTooLarge):
            await pool.parse(".txt", b"x" * 2000)
        with pytest.raises(InvalidRequest) as caught:
            await pool.parse(".html", b"<p>a</p>" * 1500)
        assert "limits.max_html_tags" in caught.value.message
        assert caught.value.param == "file"
    finally:
        await pool.aclose()


async def test_a_parse_past_the_time_limit_is_stopped_and_the_pool_still_works() -> None:
    pool = ParserPool(1, 0.2, 1024 * MIB, ParseCaps(max_text_bytes=64 * MIB))
    try:
        slow = b"<p>word</p>" * 150_000  # about a second of tokenizing, more on a loaded machine
        with pytest.raises(InvalidRequest) as caught:
            await pool.parse(".html", slow)
        assert caught.value.code == "parse_timeout"
        assert "limits.parse_timeout" in caught.value.message
        assert (await pool.parse(".txt", b"still here")).text == "still here"
    finally:
        await pool.aclose()
