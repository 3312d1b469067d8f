"""What every HTTP object store backend (Swift, S3) does the same way: reads, ranges,
sizes and deletes in terms of one authenticated request.

A backend mixes in :class:`HttpObjectReads` and supplies ``_request`` (one request with
its own authentication, retrying transport failures as TransientBackendError) and
``_fail`` (the BackendError for an unexpected answer, naming the store and the call).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from haven.datamover.backends.base import BackendError, ObjectInfo, ObjectNotFound
from haven.datamover.backends.keys import check_key
from haven.datamover.errors import InvalidArgument

# 404 on delete: already gone (delete is idempotent); 202: Swift's "accepted"
_DELETED = frozenset({200, 202, 204, 404})


class HttpObjectReads:
    store = "http"  # the store's name in messages ("s3", "swift")

    def _request(
        self, method: str, what: str, *, key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:  # fmt: skip
        raise NotImplementedError

    def _fail(self, what: str, resp: httpx.Response) -> BackendError:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        check_key(key)
        resp = self._request("GET", f"get {key}", key=key)
        if resp.status_code == 200:
            return resp.content
        if resp.status_code == 404:
            raise ObjectNotFound(key)
        raise self._fail(f"get {key}", resp)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        check_key(key)
        if offset < 0 or length < 0:
            raise InvalidArgument("range", f"negative offset or length ({offset}, {length})")
        if length == 0:
            self.stat(key)
            return b""
        what = f"get {key} [{offset}:+{length}]"
        resp = self._request(
            "GET", what, key=key, headers={"Range": f"bytes={offset}-{offset + length - 1}"}
        )
        if resp.status_code == 206:
            return resp.content
        if resp.status_code == 200:  # the whole object (range ignored)
            return resp.content[offset : offset + length]
        if resp.status_code == 416:  # offset at or past the end, like pread
            return b""
        if resp.status_code == 404:
            raise ObjectNotFound(key)
        raise self._fail(what, resp)

    def stat(self, key: str) -> ObjectInfo:
        check_key(key)
        resp = self._request("HEAD", f"stat {key}", key=key)
        if resp.status_code == 200:
            try:
                return ObjectInfo(key, int(resp.headers["Content-Length"]))
            except (KeyError, ValueError):
                raise BackendError(
                    f"{self.store} stat {key}: no object size in the answer"
                ) from None
        if resp.status_code == 404:
            raise ObjectNotFound(key)
        raise self._fail(f"stat {key}", resp)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        check_key(key)
        resp = self._request("DELETE", f"delete {key}", key=key)
        if resp.status_code not in _DELETED:
            raise self._fail(f"delete {key}", resp)
