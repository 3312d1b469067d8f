"""Progress reports for long data-mover work (backup, restore, check)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Progress:
    """``bytes_done`` of ``bytes_total`` after ``elapsed`` seconds; ``rate`` in bytes/s,
    ``eta`` in seconds (None until a rate is known). ``phase`` names the work."""

    phase: str
    bytes_done: int
    bytes_total: int
    elapsed: float
    rate: float
    eta: float | None


ProgressCallback = Callable[[Progress], None]


class ProgressMeter:
    """Thread-safe byte counter that calls ``callback`` at most every ``interval`` s
    (and always on :meth:`finish`). Callbacks run on whichever thread ticks."""

    def __init__(
        self, phase: str, total: int, callback: ProgressCallback | None, interval: float = 0.2
    ) -> None:
        self.phase, self.total, self.callback, self.interval = phase, total, callback, interval
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            due = self.callback is not None and now - self._last >= self.interval
            if due:
                self._last = now
        if due:
            self._emit()

    def snapshot(self) -> Progress:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else None
        return Progress(self.phase, self.done, self.total, elapsed, rate, eta)

    def _emit(self) -> None:
        if self.callback is not None:
            self.callback(self.snapshot())

    def finish(self) -> Progress:
        snap = self.snapshot()
        if self.callback is not None:
            self.callback(snap)
        return snap
