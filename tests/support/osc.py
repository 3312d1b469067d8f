"""``openstack dr`` in tests, run as a user runs it: the ``openstack`` command
(``python -m openstackclient.shell``) in a subprocess with password options for a lab
user. The plugin's entry points come from this checkout's pyproject.toml through a
``haven_dr`` dist-info written to a temporary directory first on the subprocess's path
(the shared venv's install may predate them; same name, so it replaces that metadata
rather than adding a second copy of the ``dr`` plugin)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.identity_lab import REPO_ROOT, IdentityLab


def declared_entry_points() -> dict[str, dict[str, str]]:
    """pyproject.toml's ``[project.entry-points]``: group -> name -> value."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return {g: dict(eps) for g, eps in project.get("entry-points", {}).items()}


def write_dist_info(where: Path) -> Path:
    """A minimal ``haven_dr`` dist-info in ``where`` carrying the declared entry points."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    info = where / f"haven_dr-{project['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    meta = f"Metadata-Version: 2.1\nName: haven-dr\nVersion: {project['version']}\n"
    (info / "METADATA").write_text(meta)
    lines = []
    for group, eps in declared_entry_points().items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in eps.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return where


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, (self.code, self.err)
        return json.loads(self.out)


@dataclass(frozen=True)
class Openstack:
    """``openstack`` for the identity lab's users (all in the Default domain)."""

    ks: IdentityLab
    overlay: Path  # holds the dist-info of write_dist_info
    home: Path  # HOME of the subprocess: no clouds.yaml or caches of the developer's

    def __call__(self, user: str, *args: str, region: str | None = None) -> Result:
        project = "admin" if user == "admin" else self.ks.users[user].project
        auth = [
            "--os-auth-type", "password", "--os-auth-url", self.ks.auth_url,
            "--os-identity-api-version", "3",
            "--os-username", user, "--os-password", self.ks.password,
            "--os-project-name", project,
            "--os-user-domain-name", "Default", "--os-project-domain-name", "Default",
        ]  # fmt: skip
        if region:
            auth += ["--os-region-name", region]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "HAVEN_"))}
        paths = [str(self.overlay), *sys.path]
        env.update(HOME=str(self.home), PYTHONPATH=os.pathsep.join(p for p in paths if p))
        proc = subprocess.run(
            [sys.executable, "-m", "openstackclient.shell", *auth, *args],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        return Result(proc.returncode, proc.stdout, proc.stderr)
