"""Running the ``haven`` command in tests, always against a private ``HAVEN_HOME``.

Two ways, for two purposes:

- :func:`haven` runs ``python -m haven.cli`` in a fresh process, as an operator does
  (real argv bytes, real umask, real exit status). Arguments may be ``bytes`` to pass
  what a shell would pass for ``$'\\xff'``.
- :func:`invoke` runs the Typer app in this process with Typer's ``CliRunner`` (fast
  enough for fuzzing); every ``HAVEN_*`` variable of the outer environment is removed
  for the call, so a developer's or CI's settings never leak into a test, and the
  engine's process-wide catalog is dropped so that the call opens ``home``'s.

Both return a :class:`Ran`; an exception that escaped the command (a bug: exit 1) is
in ``Ran.exception`` for the assertion message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from haven.cli.main import app

EXAMPLE = Path(__file__).parents[2] / "examples" / "three-tier.yaml"


@dataclass(frozen=True)
class Ran:
    """What a ``haven`` process did: exit status and its decoded output streams."""

    returncode: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


def _clean_env(home: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    full["HAVEN_HOME"] = str(home)
    full.update(env or {})
    return full


def haven(
    home: Path,
    *args: str | bytes,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    umask: int | None = None,
    timeout: float = 60,
    netns: str | None = None,
) -> Ran:
    """Run ``haven ARGS`` in a new process with ``HAVEN_HOME=home`` (and ``umask``);
    ``netns``: inside that network namespace (``ip netns exec``, root only), e.g. a KVM
    lab site's, so that Haven reaches the other site across the lab's link."""
    # an explicit umask is set in the child only, never in the test process itself
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    where = ["ip", "netns", "exec", netns] if netns else []
    proc = subprocess.run(
        [*where, sys.executable, "-m", "haven.cli", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=_clean_env(home, env),
        timeout=timeout,
        check=False,
        preexec_fn=preexec,
    )
    return Ran(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


def invoke(
    home: Path,
    args: Sequence[str],
    *,
    stdin: bytes | str | None = None,
    env: Mapping[str, str] | None = None,
) -> Ran:
    """Run the Typer app in-process (``CliRunner``) with ``HAVEN_HOME=home``."""
    from haven.engine import services

    overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("HAVEN_")}
    overrides["HAVEN_HOME"] = str(home)
    overrides.update(env or {})
    services.use_catalog(None)
    try:
        result = CliRunner().invoke(app, list(args), input=stdin, env=overrides)
    finally:
        services.use_catalog(None)
    escaped = result.exception if not isinstance(result.exception, SystemExit) else None
    return Ran(result.exit_code, result.stdout, result.stderr, escaped)
