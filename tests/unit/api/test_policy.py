"""The policy defaults in code, a deployment's override file, and the sample generator
finding them through the entry points pyproject.toml declares."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from haven.api.auth import Caller
from haven.api.policy import Authorizer, list_rules
from haven.domain.errors import ValidationError

ROOT = Path(__file__).parents[3]
RANK = {"reader": 0, "member": 1, "manager": 2, "admin": 3}
NEEDS = {  # rule -> the least role allowed
    "haven:site:list": "reader", "haven:site:create": "admin", "haven:policy:update": "admin",
    "haven:repository:get": "reader", "haven:group:list": "reader", "haven:group:create": "member",
    "haven:plan:delete": "member", "haven:point:list": "reader", "haven:point:delete": "manager",
    "haven:operation:get": "reader",
    "haven:operation:protect": "member", "haven:operation:test-failover": "member",
    "haven:operation:cleanup": "member", "haven:operation:failover": "manager",
    "haven:operation:failback": "manager", "haven:status:get": "reader", "haven:apply": "member",
    "haven:apply:operator": "admin", "haven:all_projects": "admin",
}  # fmt: skip


def caller(role: str) -> Caller:
    return Caller("user", "project", frozenset({role}), role == "admin", 0.0)


def test_defaults_follow_reader_member_manager_admin() -> None:
    authorizer = Authorizer()
    registered = {r.name for r in list_rules()}
    assert set(NEEDS) <= registered
    for rule, least in NEEDS.items():
        for role, rank in RANK.items():
            assert authorizer.allowed(rule, caller(role)) is (rank >= RANK[least]), (rule, role)
    assert not authorizer.allowed("haven:group:list", caller("other-role"))


def test_a_policy_file_overrides_a_default(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text('"haven:operation:failover": "role:admin"\n"haven:group:list": "!"\n')
    authorizer = Authorizer(str(path))
    assert not authorizer.allowed("haven:operation:failover", caller("manager"))
    assert authorizer.allowed("haven:operation:failover", caller("admin"))
    assert not authorizer.allowed("haven:group:list", caller("admin"))
    assert authorizer.allowed("haven:group:get", caller("reader"))  # the rest stays
    with pytest.raises(ValidationError) as err:
        Authorizer(str(tmp_path / "absent.yaml"))
    assert err.value.path == "HAVEN_API_POLICY_FILE"


def _entry_points_dir(tmp: Path) -> Path:
    """A dist-info holding exactly the entry points pyproject.toml declares (the shared
    virtualenv's install may predate them)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dist = tmp / "haven_policy_check-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: haven-policy-check\nVersion: 0\n")
    lines = []
    for group in ("oslo.policy.policies", "oslo.policy.enforcer"):
        lines += [f"[{group}]", *(f"{k} = {v}" for k, v in project["entry-points"][group].items())]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return tmp


def test_the_sample_generator_prints_the_defaults(tmp_path: Path) -> None:
    installed = importlib.metadata.entry_points(group="oslo.policy.policies", name="haven")
    paths = [] if installed else [str(_entry_points_dir(tmp_path))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*paths, str(ROOT / "src")]))
    tool = Path(sys.executable).with_name("oslopolicy-sample-generator")
    out = subprocess.run([str(tool), "--namespace", "haven"], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout  # fmt: skip
    assert '#"haven:operation:failover": "rule:haven_manager"' in out
    assert '#"haven:site:create": "rule:haven_admin"' in out
    assert '#"haven_reader": "role:reader or role:member or role:manager or role:admin"' in out
    assert "# POST  /v1/operations" in out
