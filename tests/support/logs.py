"""Haven's logging captured as JSON lines (the real handler, redaction and context
filters, the real formatter), restored afterwards."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from haven.observability.logging import configure


class JsonLog:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@contextmanager
def json_log(*debug: str) -> Iterator[JsonLog]:
    """Haven at DEBUG in JSON into a buffer; ``debug``: library loggers also at DEBUG."""
    stream = io.StringIO()
    levels = {name: logging.getLogger(name).level for name in debug}
    configure(level="DEBUG", fmt="json", stream=stream)
    for name in debug:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield JsonLog(stream)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        configure()  # back to the environment's settings, on stderr
