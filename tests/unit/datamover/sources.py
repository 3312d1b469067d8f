"""Block sources for data-mover tests."""

from __future__ import annotations


class BytesSource:
    """A BlockSource implemented structurally over bytes (as an NBD adapter would): no
    allocation map, no mapping, nothing but ``size`` and ``readinto``."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def size(self) -> int:
        return len(self.data)

    def readinto(self, offset: int, buf: memoryview) -> int:
        part = self.data[offset : offset + len(buf)]
        buf[: len(part)] = part
        return len(part)
