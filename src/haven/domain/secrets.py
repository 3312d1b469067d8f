"""References to secrets. Specs and the catalog hold references, never secret values.

A secret is read from an environment variable or a file at the moment it is needed,
by an adapter. ``str()`` of a reference shows where it comes from, never its value.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class SecretSource(Enum):
    ENV = "env"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class SecretRef:
    source: SecretSource
    name: str  # environment variable name or file path

    def __str__(self) -> str:
        return f"<secret from {self.source.value} {self.name}>"


REDACTED = "***"
