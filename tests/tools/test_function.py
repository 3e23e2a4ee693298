"""Python functions become tools: schema from type hints, validation by pydantic."""

from __future__ import annotations

import threading
from typing import Literal

import pytest
from pydantic import BaseModel

from hangar.errors import ToolError
from hangar.tools import FunctionTool, ToolContext, tool

CTX = ToolContext(namespace="default", run_id="run_1", agent="a")


class Point(BaseModel):
    x: float
    y: float


def search(query: str, limit: int = 5, mode: Literal["fast", "deep"] = "fast") -> list[str]:
    """Search the catalogue.

    Longer explanation that is not part of the description.
    """
    return [f"{query}:{mode}"] * limit


def test_schema_comes_from_type_hints_and_docstring() -> None:
    t = FunctionTool(search)
    d = t.definition
    assert (d.name, d.description) == ("search", "Search the catalogue.")
    assert d.parameters["required"] == ["query"]
    props = d.parameters["properties"]
    assert props["query"]["type"] == "string"
    assert props["limit"] == {"default": 5, "title": "Limit", "type": "integer"}
    assert props["mode"]["enum"] == ["fast", "deep"]
    assert d.parameters["additionalProperties"] is False


async def test_arguments_are_validated_and_results_serialised() -> None:
    t = FunctionTool(search)
    assert await t.call({"query": "q", "limit": 2}, CTX) == '["q:fast", "q:fast"]'
    with pytest.raises(ToolError, match="limit"):
        await t.call({"query": "q", "limit": "many"}, CTX)
    with pytest.raises(ToolError, match="query"):
        await t.call({}, CTX)
    with pytest.raises(ToolError, match="unexpected"):
        await t.call({"query": "q", "unexpected": 1}, CTX)


async def test_models_as_parameters_and_the_context_is_injected_not_exposed() -> None:
    @tool(name="dist", idempotent=True)
    async def distance(a: Point, b: Point, ctx: ToolContext) -> str:
        """Distance between two points."""
        return f"{((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5} for {ctx.agent}"

    assert distance.idempotent and distance.definition.name == "dist"
    assert "ctx" not in distance.definition.parameters["properties"]
    assert "Point" in str(distance.definition.parameters["$defs"])
    assert await distance.call({"a": {"x": 0, "y": 0}, "b": {"x": 3, "y": 4}}, CTX) == "5.0 for a"


async def test_sync_functions_run_off_the_event_loop() -> None:
    def where() -> str:
        """Which thread runs me."""
        return threading.current_thread().name

    assert await FunctionTool(where).call({}, CTX) != threading.current_thread().name
