"""Named SQL statements, kept in ``.sql`` files beside the code that runs them (as
procrastinate keeps ``sql/queries.sql``).

A file holds blocks, each starting with a line ``-- name: NAME``; the comment lines
that follow say why. ``{NAME}`` in a block includes another block of the same file
(so a statement and its parts are read in one place, and a part shared by several
statements is written once); ``:name`` is a parameter. A statement is given to
``sqlite3`` with its parameters by name, or to asyncpg with them numbered (``$1``…)
in the order they first appear, which the statement keeps to turn a mapping of
values into its arguments.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from hangar.errors import StatementError

_NAME = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"\{([a-z_]+)\}")
_PARAMETER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
"""A parameter: ``:name``, never a cast (``::jsonb``) or a word inside one."""


@dataclass(frozen=True)
class DriverStatement:
    """A statement for asyncpg: its text with numbered parameters, and their names in
    that order."""

    text: str
    parameters: tuple[str, ...]

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The values in the statement's order; every parameter must be given, and
        nothing else (a value nobody reads is a mistake in the caller)."""
        extra = set(values) - set(self.parameters)
        missing = set(self.parameters) - set(values)
        if extra or missing:
            raise StatementError(
                f"the statement takes {sorted(self.parameters)}: missing {sorted(missing)},"
                f" unknown {sorted(extra)}"
            )
        return tuple(values[name] for name in self.parameters)


@functools.cache
def blocks(file: str) -> dict[str, str]:
    """The named blocks of ``hangar/store/queries/FILE``, comments dropped."""
    text = resources.files("hangar.store").joinpath("queries", file).read_text("utf-8")
    found: dict[str, str] = {}
    parts = _NAME.split(text)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise StatementError(f"{file} names {name!r} twice")
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        found[name] = "\n".join(lines).strip()
    return found


@functools.cache
def statement(file: str, name: str) -> str:
    """The block ``name`` of ``file`` with its includes in place."""
    return _resolve(blocks(file), file, name, ())


def _resolve(found: dict[str, str], file: str, name: str, through: tuple[str, ...]) -> str:
    if name in through:
        raise StatementError(f"{file}: {' -> '.join((*through, name))} includes itself")
    if name not in found:
        raise StatementError(f"{file} has no statement {name!r}")
    return _INCLUDE.sub(lambda m: _resolve(found, file, m.group(1), (*through, name)), found[name])


@functools.cache
def for_driver(file: str, name: str) -> DriverStatement:
    """The statement with its parameters numbered, for asyncpg."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in order:
            order.append(match.group(1))
        return f"${order.index(match.group(1)) + 1}"

    text = _PARAMETER.sub(number, statement(file, name))
    return DriverStatement(text, tuple(order))
