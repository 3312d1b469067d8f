"""The OpenStack lab's Keystone as the Haven API's tests use it (``lab/openstack/up.sh
--identity``, or a full ``up``): its test projects, users with one role each, Haven's
service user and the disaster-recovery endpoint, read from the ``identity.json`` the lab
writes. Tests marked ``keystone`` call :func:`identity_lab`; where the lab is not up they
skip with the reason (and fail in CI, by the lab policy in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import lab_unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]


def identity_json_path() -> Path:
    """``$HAVEN_OS_IDENTITY``, else the lab state dir by up.sh's rules."""
    if env := os.environ.get("HAVEN_OS_IDENTITY"):
        return Path(env)
    if own := os.environ.get("HAVEN_OS_STATE"):
        return Path(own) / "identity.json"
    if lab_state := os.environ.get("HAVEN_LAB_STATE"):
        return Path(lab_state) / "openstack" / "identity.json"
    return REPO_ROOT / "lab" / ".state" / "openstack" / "identity.json"


@dataclass(frozen=True)
class LabUser:
    name: str
    id: str
    project: str
    project_id: str
    role: str


@dataclass(frozen=True)
class IdentityLab:
    auth_url: str
    password: str  # lab-only, loopback only
    api_url: str
    api_port: int
    projects: dict[str, str]  # name -> id
    users: dict[str, LabUser]
    admin_project_id: str
    barbican_url: str | None = None  # the lab's Barbican (key-manager), when it runs
    service_user: str = "haven"
    service_project: str = "service"

    def token(self, user: str, project: str | None = None) -> str:
        """A project-scoped token for ``user`` (``admin`` included), straight from Keystone."""
        return self.login(user, project)[0]

    def login(self, user: str, project: str | None = None) -> tuple[str, str]:
        """(token, user id) for ``user``, scoped to ``project`` (default: the user's own;
        Haven's service user: the service project)."""
        if project is None:
            if user == "admin":
                project = "admin"
            elif user == self.service_user:
                project = self.service_project
            else:
                project = self.users[user].project
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": user,
                            "domain": {"name": "Default"},
                            "password": self.password,
                        }
                    },
                },
                "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
            }
        }
        req = urllib.request.Request(
            f"{self.auth_url}/auth/tokens", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=30) as r:
            return str(r.headers["X-Subject-Token"]), str(json.load(r)["token"]["user"]["id"])


def identity_lab() -> IdentityLab:
    path = identity_json_path()
    if not path.exists():
        lab_unavailable(f"Keystone lab not up: {path} missing (run lab/openstack/up.sh --identity)")
    info: dict[str, Any] = json.loads(path.read_text())
    try:
        with urllib.request.urlopen(info["auth_url"], timeout=10):
            pass
    except (urllib.error.URLError, OSError) as exc:
        lab_unavailable(f"Keystone at {info['auth_url']} not answering: {exc}")
    return IdentityLab(
        auth_url=info["auth_url"],
        password=info["password"],
        api_url=info["api_url"],
        api_port=int(info["api_port"]),
        projects=dict(info["projects"]),
        users={n: LabUser(name=n, **u) for n, u in info["users"].items()},
        admin_project_id=info["admin"]["project_id"],
        barbican_url=(info.get("barbican") or {}).get("url"),
        service_user=info["service_user"]["name"],
        service_project=info["service_user"]["project"],
    )


def barbican_lab() -> tuple[IdentityLab, str]:
    """The identity lab and its Barbican's URL; skips (fails in CI) where Barbican is not
    up (a lab from before Barbican was added: run up.sh --identity again)."""
    lab = identity_lab()
    if not lab.barbican_url:
        lab_unavailable("the lab's identity.json names no Barbican (run up.sh --identity again)")
    assert lab.barbican_url is not None
    try:
        with urllib.request.urlopen(lab.barbican_url, timeout=10):
            pass
    except urllib.error.HTTPError:
        pass  # answering
    except (urllib.error.URLError, OSError) as exc:
        lab_unavailable(f"Barbican at {lab.barbican_url} not answering: {exc}")
    return lab, lab.barbican_url
