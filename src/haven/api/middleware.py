"""Hostile input stopped before any parsing, as a pure ASGI middleware.

- A request body is counted as it streams in (``Content-Length`` is not trusted): past
  ``max_body`` bytes the request is answered 413 and the rest is not read.
- A body must be JSON (``application/json``, optionally with parameters): 415 otherwise.
- JSON nested deeper than ``max_depth`` is 422 before a parser recurses into it.
- Every response carries ``X-OpenStack-Request-Id`` (the OpenStack API guidelines); error
  documents carry the same id, and so does every log line written while the request is
  handled (``observability.logging.request_id``), ending with one access line per request
  (method, path without the query, status, duration; never a header, so never a token).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from haven.domain.errors import ExitCode, HavenError, ValidationError, error_document
from haven.observability.logging import request_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-openstack-request-id"
access = logging.getLogger("haven.api.access")
__all__ = ["GuardMiddleware", "request_id"]

_OPEN, _CLOSE, _QUOTE, _BACKSLASH = frozenset(b"[{"), frozenset(b"]}"), 0x22, 0x5C


class PayloadTooLarge(HavenError):
    exit_code = ExitCode.BAD_INPUT
    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")


class UnsupportedMediaType(HavenError):
    exit_code = ExitCode.BAD_INPUT
    http_status = 415

    def __init__(self, got: str) -> None:
        super().__init__(f"the body must be application/json, not {got[:80]!r}")


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (brackets inside strings
    do not count). Linear, no recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSE:
            depth -= 1
    return deepest


async def send_error(
    send: Send, exc: HavenError, rid: str, extra: list[tuple[bytes, bytes]]
) -> None:
    doc = error_document(exc)
    doc["error"]["request_id"] = rid  # type: ignore[index]
    body = json.dumps(doc).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (REQUEST_ID_HEADER.encode(), rid.encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": exc.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    def __init__(self, app: ASGIApp, max_body: int, max_depth: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = f"req-{uuid.uuid4()}"
        token = request_id.set(rid)
        status: list[int] = []
        started = time.monotonic()
        try:
            await self._guarded(scope, receive, self._with_id(send, rid, status), rid)
        finally:
            ms = round((time.monotonic() - started) * 1000, 1)
            code = status[0] if status else 0  # 0: the client left before an answer
            access.info("%s %s %d %.1fms", scope["method"], scope["path"], code, ms,
                        extra={"haven_status": code, "haven_duration_ms": ms})  # fmt: skip
            request_id.reset(token)

    @staticmethod
    def _with_id(send: Send, rid: str, status: list[int]) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
                headers = [
                    h
                    for h in message.get("headers", [])
                    if h[0].lower() != REQUEST_ID_HEADER.encode()
                ]
                message["headers"] = [*headers, (REQUEST_ID_HEADER.encode(), rid.encode())]
            await send(message)

        return sending

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, rid: str) -> None:
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        total = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body:
                await send_error(
                    send, PayloadTooLarge(self.max_body), rid, [(b"connection", b"close")]
                )
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        problem = self._problem(scope, body)
        if problem is not None:
            await send_error(send, problem, rid, [])
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _problem(self, scope: Scope, body: bytes) -> HavenError | None:
        if not body:
            return None
        ctype = ""
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-type":
                ctype = value.decode("latin-1")
        if ctype.split(";")[0].strip().lower() != "application/json":
            return UnsupportedMediaType(ctype or "no content type")
        if json_depth(body) > self.max_depth:
            return ValidationError("(body)", f"JSON nested deeper than {self.max_depth} levels")
        return None
