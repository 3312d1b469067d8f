"""Projects (tenants): the Keystone project a group belongs to.

A group's ``project`` is a Keystone project id; ``None`` means the group is the
operator's own (not a tenant's): reported under its own key in usage and never subject
to quotas.
"""

from __future__ import annotations

import re

PROJECT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
PROJECT_HELP = "1-64 characters of letters, digits, '_' and '-' (a Keystone project id)"


def check_project(value: str) -> str:
    """``value`` if it is a valid project id, else ValueError saying what is valid."""
    if not isinstance(value, str) or not PROJECT_RE.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 70 else repr(value)[:67] + "..."
        raise ValueError(f"{shown} is not a project id ({PROJECT_HELP})")
    return value
