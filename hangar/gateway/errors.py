"""Every HTTP error is ``{"error": {"code", "message", "details"}}`` with a fitting
status. This module is the one place that decides how errors look on the wire."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from hangar.errors import HangarError

log = logging.getLogger("hangar.gateway")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable: clients may match on it.")
    message: str = Field(description="What was wrong, and where.")
    details: dict[str, Any] = Field(description="More about it; 'hint' says what to do.")


class ErrorBody(BaseModel):
    """Every error answer's body."""

    error: ErrorDetail


def install_openapi(app: FastAPI) -> None:
    """The OpenAPI document declares what errors really look like: every operation may
    answer an ``ErrorBody`` (its ``default`` response), and FastAPI's own validation
    error shape, which Hangar never sends, is gone."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        found = components.setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            found.pop(name, None)
        found["ErrorDetail"] = ErrorDetail.model_json_schema()
        found["ErrorBody"] = {
            "title": "ErrorBody",
            "description": ErrorBody.__doc__,
            "type": "object",
            "properties": {"error": {"$ref": "#/components/schemas/ErrorDetail"}},
            "required": ["error"],
        }
        error = {
            "description": "An error: what was wrong, where, and what to do.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                responses["default"] = error
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HangarError)
    async def hangar_error(_: Request, exc: HangarError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": _field(tuple(e["loc"])), "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": "body", "message": "invalid"}
        return JSONResponse(
            error_body(
                "invalid_request",
                f"{first['field']}: {first['message']}",
                {"problems": problems},
            ),
            status_code=422,
        )

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            error_body("internal_error", "an unexpected error occurred; see the server log"),
            status_code=500,
        )
