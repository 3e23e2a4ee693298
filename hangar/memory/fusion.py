"""Reciprocal rank fusion: one ranking from several (vector and full-text search).

Scores from different searches are not comparable (a cosine distance, a BM25
score), but ranks are: each result scores 1 / (k + rank) in each ranking it appears
in, summed. k = 60 is the constant of Cormack, Clarke and Büttcher (2009), the
usual choice; it keeps one list's top result from outweighing agreement between
lists.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = 60
T = TypeVar("T", bound=Hashable)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[T]], *, k: int = K) -> list[T]:
    """The fused order of every item in any ranking, best first; ties keep the order
    in which items were first seen."""
    scores: dict[T, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda item: -scores[item])
