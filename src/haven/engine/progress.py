"""Byte progress of the data work running in this process, for interfaces to show.

Steps that move data (backup, restore) report through ``reporter(label)``; a CLI that
waits for an operation in the same process reads ``latest()`` to draw its progress line.
Only labels (volume names) and byte counts are kept: nothing secret.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from haven.datamover import Progress, ProgressCallback

_lock = threading.Lock()
_latest: dict[str, Progress] = {}


@dataclass(frozen=True, slots=True)
class Transfer:
    label: str
    done: int
    total: int
    rate: float


def reporter(label: str) -> ProgressCallback:
    def report(p: Progress) -> None:
        with _lock:
            if p.bytes_done >= p.bytes_total:
                _latest.pop(label, None)
            else:
                _latest[label] = p

    return report


def latest() -> list[Transfer]:
    with _lock:
        return [
            Transfer(label, p.bytes_done, p.bytes_total, p.rate) for label, p in _latest.items()
        ]
