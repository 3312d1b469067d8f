"""Request bodies for the HTTP backends (Swift, S3)."""

from __future__ import annotations

from collections.abc import Iterator

PIECE = 1 << 20


def pieces(body: memoryview) -> Iterator[bytes]:
    """A request body in 1 MiB pieces: a 32 MiB pack is sent without copying it whole
    (the HTTP stack copies each piece once), which bounds a backup's memory. A new
    iterator is needed for every attempt of a request."""
    for start in range(0, len(body), PIECE):
        yield bytes(body[start : start + PIECE])
