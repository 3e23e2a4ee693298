"""Plain Python functions as tools: the JSON Schema comes from the type hints,
the description from the docstring, validation from pydantic."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import to_jsonable_python

from hangar.errors import ToolError
from hangar.models.messages import ToolDefinition
from hangar.tools.base import ToolContext


class FunctionTool:
    """Wraps ``fn(arg: T, …, ctx: ToolContext = …)``; sync functions run in a thread."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = False,
    ) -> None:
        self.fn = fn
        self._idempotent = idempotent
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        self._context_param: str | None = None
        for param in inspect.signature(fn).parameters.values():
            annotation = hints.get(param.name, Any)
            if annotation is ToolContext:
                self._context_param = param.name
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (annotation, default)
        self._arguments: type[BaseModel] = create_model(
            f"{fn.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
        schema = self._arguments.model_json_schema()
        schema.pop("title", None)
        doc = inspect.getdoc(fn) or ""
        self._definition = ToolDefinition(
            name=name or fn.__name__,
            description=description or doc.split("\n\n")[0].replace("\n", " "),
            parameters=schema,
        )

    @property
    def definition(self) -> ToolDefinition:
        return self._definition

    @property
    def idempotent(self) -> bool:
        return self._idempotent

    async def call(self, arguments: dict[str, Any], context: ToolContext) -> str:
        try:
            parsed = self._arguments.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ToolError(f"invalid arguments for {self.definition.name}: {problems}") from None
        kwargs = {key: getattr(parsed, key) for key in type(parsed).model_fields}
        if self._context_param is not None:
            kwargs[self._context_param] = context
        if inspect.iscoroutinefunction(self.fn):
            result = await self.fn(**kwargs)
        else:
            result = await asyncio.to_thread(self.fn, **kwargs)
        if isinstance(result, str):
            return result
        return json.dumps(to_jsonable_python(result))


def tool(
    *, name: str | None = None, idempotent: bool = False
) -> Callable[[Callable[..., Any]], FunctionTool]:
    """Decorator form of ``FunctionTool``."""

    def wrap(fn: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(fn, name=name, idempotent=idempotent)

    return wrap
