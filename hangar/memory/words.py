"""A user's words as a full-text query that cannot be a syntax error: letters and
digits only, common English words left out (FTS5 on SQLite, ``to_tsquery`` on
PostgreSQL)."""

from __future__ import annotations

import re

WORD = re.compile(r"\w+", re.UNICODE)


def query_words(text: str) -> list[str]:
    """The distinct words a user typed, lower case, in order: letters and digits only,
    so no query syntax can slip through."""
    return list(dict.fromkeys(WORD.findall(text.lower())))


STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)
"""English words too common to search by (Snowball's list, as PostgreSQL's ``english``
configuration drops them): matching them costs a pass over most chunks and ranks
nothing."""


def fts_query(text: str) -> str | None:
    """A user's words as an FTS5 query that cannot be a syntax error: each word quoted,
    any of them may match (BM25 ranks the chunks with more, and rarer, ones first).
    Stop words are left out unless the query is nothing else."""
    typed = query_words(text)
    kept = [word for word in typed if word not in STOPWORDS] or typed
    return " OR ".join(f'"{word}"' for word in kept) or None


def ts_query(text: str) -> str | None:
    """A user's words as a ``to_tsquery`` argument that cannot be a syntax error: the
    words alone, any of them may match."""
    return " | ".join(query_words(text)) or None
