"""Chunks fit the embedder, overlap at their borders, and stay inside one Markdown
section, carrying its heading path."""

from __future__ import annotations

from itertools import pairwise

import pytest

from hangar.memory.chunking import approximate_tokens, chunk_text, sections, windows


def words(n: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def test_every_chunk_fits_and_neighbours_overlap() -> None:
    text = words(1000)
    chunks = chunk_text(text, max_tokens=50, overlap=10)
    assert all(approximate_tokens(c.text) <= 50 for c in chunks)
    for before, after in pairwise(chunks):
        shared = set(before.text.split()) & set(after.text.split())
        assert 1 <= approximate_tokens(" ".join(shared)) <= 10
    # Nothing is lost: every word is in some chunk, in order.
    seen = [w for c in chunks for w in c.text.split()]
    assert sorted(set(seen), key=seen.index) == text.split()
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_markdown_is_cut_at_headings_and_keeps_their_path() -> None:
    doc = "\n".join(
        [
            "# Guide",
            "Intro text.",
            "## Install",
            "### Linux",
            "apt-get install hangar",
            "```sh",
            "# not a heading: a shell comment",
            "```",
            "## Use",
            "Run it.",
        ]
    )
    found = list(sections(doc))
    assert [path for path, _ in found] == [
        ("Guide",),
        ("Guide", "Install", "Linux"),
        ("Guide", "Use"),
    ]
    assert "# not a heading" in found[1][1]
    chunks = chunk_text(doc, markdown=True)
    assert chunks[1].title == "Guide > Install > Linux"
    assert chunks[1].embedding_text().startswith("Guide > Install > Linux\n\napt-get")
    assert chunk_text(doc, markdown=False)[0].headings == ()


def test_a_word_longer_than_a_chunk_is_a_chunk_of_its_own() -> None:
    pieces = list(windows("short " + "x" * 400 + " tail", 20, 5, approximate_tokens))
    assert pieces == ["short", "x" * 400, "tail"]


def test_overlap_must_be_smaller_than_the_chunk() -> None:
    with pytest.raises(ValueError, match="overlap"):
        list(windows("a b c", 5, 5, approximate_tokens))
