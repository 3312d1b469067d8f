"""Bounded parallel map over chunks with reused buffers.

Contract: ``run_chunked(items, fn, workers, buffer_size)`` calls ``fn(item, buf)`` on
``workers`` threads, where ``buf`` is one of ``2 * workers`` preallocated bytearrays of
``buffer_size`` bytes, lent for the duration of the call only. At most ``2 * workers``
calls are queued or running, so memory stays bounded however large the volume is. The
first exception raised by ``fn`` stops submission, cancels queued calls and is
re-raised after running calls finish.
"""

from __future__ import annotations

import os
import queue
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def run_chunked(
    items: Iterable[T],
    fn: Callable[[T, bytearray], None],
    *,
    workers: int,
    buffer_size: int,
) -> None:
    slots = 2 * workers
    free: queue.Queue[bytearray] = queue.Queue()
    for _ in range(slots):
        free.put(bytearray(buffer_size))

    def task(item: T, buf: bytearray) -> None:
        try:
            fn(item, buf)
        finally:
            free.put(buf)

    pending: deque[Future[None]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="haven-dm") as pool:
        try:
            for item in items:
                buf = free.get()
                while pending and pending[0].done():
                    pending.popleft().result()
                pending.append(pool.submit(task, item, buf))
            while pending:
                pending.popleft().result()
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
