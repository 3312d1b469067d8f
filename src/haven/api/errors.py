"""Every error the API answers has one JSON shape: ``domain.errors.error_document`` (the
CLI's ``--json`` error) plus the request id, with the error's ``http_status``. FastAPI's
own validation errors and unknown routes answer in the same shape; an unexpected
exception is a 500 naming only the request id (the log has the rest)."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from haven.api.auth import Unauthenticated
from haven.api.middleware import request_id
from haven.api.schemas import ErrorDocument
from haven.domain.errors import (
    HavenError,
    NotFoundError,
    ValidationError,
    ValidationErrors,
    error_document,
)

log = logging.getLogger("haven.api")

# every route may answer these, in the one error shape (the OpenAPI document says so)
DOCUMENTED: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorDocument, "description": what}
    for code, what in (
        (401, "no token, or an invalid, expired or revoked one"),
        (403, "the policy does not allow this for the caller's roles"),
        (404, "no such object in the caller's projects"),
        (409, "busy group, or a name that is taken"),
        (413, "body larger than 1 MiB"),
        (415, "body not application/json"),
        (422, "invalid input; problems name the fields"),
        (503, "Keystone unreachable; retry"),
    )
}


class MethodNotAllowed(HavenError):
    http_status = 405


class Internal(HavenError):
    """A bug: the response names the request id, the log has the traceback."""


def respond(exc: HavenError, headers: dict[str, str] | None = None) -> JSONResponse:
    doc = error_document(exc)
    doc["error"]["request_id"] = request_id.get()  # type: ignore[index]
    return JSONResponse(doc, status_code=exc.http_status, headers=headers)


def install(app: FastAPI, challenge: str) -> None:
    @app.exception_handler(HavenError)
    async def haven_error(_: Request, exc: HavenError) -> JSONResponse:
        headers = {"WWW-Authenticate": challenge} if isinstance(exc, Unauthenticated) else None
        return respond(exc, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [ValidationError(_path(e.get("loc", ())), _message(e)) for e in exc.errors()]
        return respond(ValidationErrors(problems or [ValidationError("(request)", "invalid")]))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            return respond(MethodNotAllowed("this method is not offered on this path"))
        if exc.status_code == 404:
            return respond(NotFoundError("no such path; GET / lists the API versions"))
        err = HavenError(str(exc.detail))
        err.http_status = exc.status_code
        return respond(err)

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception) -> JSONResponse:
        log.error("request %s failed: %s", request_id.get(), type(exc).__name__, exc_info=exc)
        return respond(Internal(f"internal error; quote request id {request_id.get()}"))


def _path(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        where, rest = parts[0], parts[1:]
        return ".".join(rest) if rest else where
    return ".".join(parts) or "(request)"


def _message(err: dict[str, object]) -> str:
    kind = str(err.get("type", ""))
    if kind == "extra_forbidden":
        return "unknown field; remove it"
    if kind == "json_invalid":
        return "the body is not valid JSON"
    msg = str(err.get("msg", "invalid"))
    return msg if len(msg) < 300 else json.dumps(msg[:300])
