"""Named SQL statements: read from ``.sql`` files, includes resolved, parameters
numbered for asyncpg and checked against what a caller gives."""

from __future__ import annotations

import pytest

from hangar.errors import StatementError
from hangar.store import named_sql
from hangar.store.named_sql import DriverStatement, _resolve, for_driver, statement


def test_a_statement_includes_its_parts_and_drops_the_comments() -> None:
    text = statement("queue.postgresql.sql", "claim_next")
    assert "{" not in text.replace("'{\"resumed\": true}'", "")  # every include resolved
    assert "-- " not in text
    assert text.startswith("WITH RECURSIVE choice AS (")
    assert text.rstrip().endswith("SELECT * FROM claimed")


def test_parameters_are_numbered_in_the_order_they_first_appear() -> None:
    claim = for_driver("queue.postgresql.sql", "claim_next")
    assert claim.parameters == ("namespace", "held_back", "worker", "now", "until", "started")
    assert ":namespace" not in claim.text and "$1" in claim.text
    assert "::regclass" in for_driver("queue.postgresql.sql", "statistics_stale").text


def test_every_parameter_must_be_given_and_nothing_else() -> None:
    claim = DriverStatement("SELECT $1, $2", ("a", "b"))
    assert claim.args({"b": 2, "a": 1}) == (1, 2)
    with pytest.raises(StatementError, match=r"missing \['b'\], unknown \['c'\]"):
        claim.args({"a": 1, "c": 3})


def test_a_missing_or_circular_include_is_named() -> None:
    with pytest.raises(StatementError, match="has no statement 'nowhere'"):
        _resolve({"a": "SELECT {nowhere}"}, "f.sql", "a", ())
    with pytest.raises(StatementError, match="a -> b -> a includes itself"):
        _resolve({"a": "{b}", "b": "{a}"}, "f.sql", "a", ())


def test_every_statement_of_every_file_resolves() -> None:
    for file in ("queue.postgresql.sql", "queue.sqlite.sql"):
        for name in named_sql.blocks(file):
            assert statement(file, name)
