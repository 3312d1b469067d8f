"""Backends that wrap a backend: retry, bandwidth cap, concurrency limit.

Each wrapper is itself a :class:`~haven.datamover.backends.base.Backend`, so they
compose: ``limit_concurrency(throttle(retry(swift), rate), 8)``.
- :class:`RetryingBackend` retries only :class:`TransientBackendError`, with exponential
  backoff and full jitter; any other error propagates at once.
- :class:`ThrottledBackend` charges every byte put or got to a shared token bucket, so
  the long-run rate never exceeds ``rate`` (plus one burst).
- :class:`ConcurrencyLimitedBackend` bounds the calls in flight with a semaphore.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from haven.datamover.backends.base import Backend, ObjectInfo, TransientBackendError
from haven.datamover.errors import InvalidArgument

T = TypeVar("T")

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "KB": 1000,
    "M": 10**6,
    "MB": 10**6,
    "G": 10**9,
    "GB": 10**9,
    "KIB": 1 << 10,
    "MIB": 1 << 20,
    "GIB": 1 << 30,
}


MAX_RATE = 1 << 40  # bytes/s: a cap above this is no cap (and a typo, not a setting)


def parse_rate(text: str) -> float:
    """``"50MiB/s"``, ``"10MB/s"``, ``"1GiB"`` -> bytes per second."""
    m = re.fullmatch(r"\s*([0-9]{1,15}(?:\.[0-9]{1,9})?)\s*([A-Za-z]*?)(?:/s)?\s*", text[:64])
    unit = m.group(2).upper() if m else ""
    if m is None or len(text) > 64 or unit not in _UNITS or float(m.group(1)) <= 0:
        raise InvalidArgument("limit", f"not a rate: {text[:64]!r} (e.g. 50MiB/s)")
    rate = float(m.group(1)) * _UNITS[unit]
    if rate > MAX_RATE:
        raise InvalidArgument("limit", f"{text!r} is above {MAX_RATE >> 30} GiB/s: leave it unset")
    return rate


class _Delegate:
    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    def _call(self, fn: Callable[[], T], nbytes: int = 0) -> T:
        return fn()

    def put(self, key: str, data: bytes | memoryview) -> None:
        self._call(lambda: self.inner.put(key, data), len(data))

    def get(self, key: str) -> bytes:
        out = self._call(lambda: self.inner.get(key))
        self._after_get(len(out))
        return out

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        out = self._call(lambda: self.inner.get_range(key, offset, length))
        self._after_get(len(out))
        return out

    def _after_get(self, nbytes: int) -> None:
        pass

    def stat(self, key: str) -> ObjectInfo:
        return self._call(lambda: self.inner.stat(key))

    def exists(self, key: str) -> bool:
        return self._call(lambda: self.inner.exists(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(self._call(lambda: list(self.inner.list(prefix))))

    def delete(self, key: str) -> None:
        self._call(lambda: self.inner.delete(key))

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()


class RetryingBackend(_Delegate):
    def __init__(
        self,
        inner: Backend,
        *,
        attempts: int = 6,
        base_delay: float = 0.2,
        max_delay: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(inner)
        self.attempts, self.base_delay, self.max_delay, self.sleep = (
            attempts,
            base_delay,
            max_delay,
            sleep,
        )

    def _call(self, fn: Callable[[], T], nbytes: int = 0) -> T:
        for attempt in range(self.attempts):
            try:
                return fn()
            except TransientBackendError:
                if attempt == self.attempts - 1:
                    raise
                cap = min(self.max_delay, self.base_delay * (2**attempt))
                self.sleep(random.uniform(cap / 2, cap))
        raise AssertionError("unreachable")


class TokenBucket:
    """Thread-safe token bucket. ``take(n)`` may drive the balance negative (debt) and
    then sleeps until it is repaid, so large objects need no splitting and the average
    over any window of T seconds is at most ``rate * T + burst``."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise InvalidArgument("limit", "rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else rate / 20
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


class ThrottledBackend(_Delegate):
    def __init__(self, inner: Backend, bucket: TokenBucket) -> None:
        super().__init__(inner)
        self.bucket = bucket

    def _call(self, fn: Callable[[], T], nbytes: int = 0) -> T:
        if nbytes:
            self.bucket.take(nbytes)
        return fn()

    def _after_get(self, nbytes: int) -> None:
        self.bucket.take(nbytes)


class ConcurrencyLimitedBackend(_Delegate):
    def __init__(self, inner: Backend, max_in_flight: int) -> None:
        super().__init__(inner)
        if max_in_flight < 1:
            raise InvalidArgument("concurrency", "must be at least 1")
        self._sem = threading.BoundedSemaphore(max_in_flight)

    def _call(self, fn: Callable[[], T], nbytes: int = 0) -> T:
        with self._sem:
            return fn()


def throttle(inner: Backend, rate: float | str) -> ThrottledBackend:
    r = parse_rate(rate) if isinstance(rate, str) else rate
    return ThrottledBackend(inner, TokenBucket(r))
