"""Cutting documents into chunks an embedder can take whole.

Chunks are measured in the embedder's own tokens (all-MiniLM-L6-v2 reads 256 word
pieces and silently drops the rest, so a chunk measured in characters or words is
either wasteful or truncated). Consecutive chunks overlap, so a sentence cut at a
border is whole in one of them. Markdown is cut at its headings first: a chunk never
spans two sections, and carries its section's heading path ("Install > Linux"),
which is what makes a short chunk findable by what it is about.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

TokenCounter = Callable[[str], int]

HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
FENCE = re.compile(r"^(```|~~~)")
WORDS = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class Chunk:
    """A piece of a source: its text, the headings above it, and where it starts."""

    text: str
    headings: tuple[str, ...]
    index: int
    """Its place among the source's chunks, from 0."""

    @property
    def title(self) -> str:
        return " > ".join(self.headings)

    def embedding_text(self) -> str:
        """What is embedded and indexed: the heading path, then the text."""
        return f"{self.title}\n\n{self.text}" if self.headings else self.text


def approximate_tokens(text: str) -> int:
    """A tokenizer-free estimate, for embedders that do not say how they count: a word
    piece per four characters of a word, at least one per word."""
    return sum(max(1, -(-len(word.strip()) // 4)) for word in WORDS.findall(text))


def sections(markdown: str) -> Iterator[tuple[tuple[str, ...], str]]:
    """(heading path, body) for each section; headings inside code fences are text."""
    path: list[tuple[int, str]] = []
    body: list[str] = []
    fenced = False

    def flush() -> tuple[tuple[str, ...], str]:
        return tuple(title for _, title in path), "\n".join(body).strip()

    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else HEADING.match(line)
        if heading is None:
            body.append(line)
            continue
        found = flush()
        if found[1]:
            yield found
        body = []
        level = len(heading.group(1))
        path = [(lvl, title) for lvl, title in path if lvl < level]
        path.append((level, heading.group(2)))
    found = flush()
    if found[1]:
        yield found


def windows(text: str, max_tokens: int, overlap: int, count: TokenCounter) -> Iterator[str]:
    """Consecutive pieces of ``text`` of at most ``max_tokens``, each starting about
    ``overlap`` tokens before the previous one ended; cut between words. Words are
    counted one by one (a WordPiece tokenizer splits at white space first, so the sum
    is the count of the whole), once each: linear in the text, whatever its size."""
    if overlap >= max_tokens:
        raise ValueError(f"overlap ({overlap}) must be less than max_tokens ({max_tokens})")
    words = WORDS.findall(text)
    sizes = [max(1, count(word)) for word in words]
    start = 0
    while start < len(words):
        end, size = start, 0
        while end < len(words) and (size + sizes[end] <= max_tokens or end == start):
            size += sizes[end]
            end += 1
        yield "".join(words[start:end]).strip()
        if end >= len(words):
            return
        back, repeated = end, 0
        while back > start + 1 and repeated + sizes[back - 1] <= overlap:
            back -= 1
            repeated += sizes[back]
        start = back


def chunk_text(
    text: str,
    *,
    max_tokens: int = 200,
    overlap: int = 40,
    markdown: bool = False,
    count: TokenCounter = approximate_tokens,
) -> list[Chunk]:
    """The chunks of one source, in order."""
    parts = sections(text) if markdown else iter([((), text.strip())])
    chunks: list[Chunk] = []
    for headings, body in parts:
        if not body:
            continue
        # The heading path is embedded with every chunk: leave room for it.
        room = max_tokens - (count(" > ".join(headings)) + 2 if headings else 0)
        room = max(room, overlap + 1)
        for piece in windows(body, room, overlap, count):
            chunks.append(Chunk(piece, headings, len(chunks)))
    return chunks
