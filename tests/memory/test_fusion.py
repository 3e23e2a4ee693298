"""Reciprocal rank fusion rewards agreement between rankings."""

from __future__ import annotations

from hangar.memory.fusion import reciprocal_rank_fusion


def test_an_item_both_searches_rank_well_beats_one_only_one_ranks_first() -> None:
    vector = ["a", "b", "c"]
    text = ["d", "b", "a"]
    # a: 1/61 + 1/63, b: 2/62, d: 1/61, c: 1/63. In both lists beats first in one.
    assert reciprocal_rank_fusion([vector, text]) == ["a", "b", "d", "c"]


def test_one_ranking_is_kept_as_it_is() -> None:
    assert reciprocal_rank_fusion([["x", "y", "z"]]) == ["x", "y", "z"]
    assert reciprocal_rank_fusion([]) == []
