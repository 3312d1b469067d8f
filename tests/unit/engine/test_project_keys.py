"""Per-project data keys with the local key store (docs/keys.md): a group with a
``project`` keeps its data in the project's own part of the repository, under the
project's key; another project's key and the operator's repository key cannot read it;
a revoked or removed key fails protect and drill with exit 7 and writes nothing in
plaintext. The same behaviour against Barbican: tests/integration/keystone/test_barbican_keys.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from haven.catalog.db import haven_home
from haven.cli.main import app
from haven.datamover import Repository as DataRepository
from haven.datamover import decode_key_file, open_backend
from haven.datamover.errors import WrongKey
from haven.domain.errors import ConflictError, KeyRevoked, KeyUnavailable
from haven.domain.operations import OperationState
from haven.engine import api, connect
from haven.keystores.local import LocalKeyStore
from tests.unit.engine.lab import (
    MARKER,
    SERVERS,
    Lab,
    edited_spec,
    mark_disks,
    own_group,
    repository_files,
)

runner = CliRunner()
ALPHA = "0a1fa1fa0a1fa1fa0a1fa1fa0a1fa1fa"  # Keystone-style project ids
BETA = "0be7a0be7a0be7a0be7a0be7a0be7a00"


def _protect_json(group: str) -> tuple[int, dict[str, object]]:
    res = runner.invoke(app, ["protect", group, "--json"])
    return res.exit_code, json.loads(res.stdout)


def _open_part(lab: Lab, project: str, key: bytes) -> DataRepository:
    backend = open_backend(str(lab.root / "repo" / "projects" / project))
    return DataRepository.open(backend, master_key=key, state_dir=haven_home() / "r")


def _key(project: str) -> bytes:
    return LocalKeyStore(haven_home() / "keys" / "local").project_key(project)


def test_each_projects_data_is_under_its_own_key(lab: Lab) -> None:
    mark_disks(lab)
    own_group(lab, "shop", ALPHA)
    own_group(lab, "shop-b", BETA)
    for project in (ALPHA, BETA):
        api.create_project_key("offsite", project)
    for group in ("shop", "shop-b"):
        op = api.protect(group)
        assert op.state is OperationState.SUCCEEDED, op.error
    repo = lab.root / "repo"
    # alpha's part opens with alpha's key and holds alpha's point; the operator's part
    # (the repository's own key) holds no manifest of either project
    alpha = _open_part(lab, ALPHA, _key(ALPHA))
    assert {m.point_id for m in alpha.manifests()} == {api.points("shop")[0].id}
    alpha.close()
    assert (repo / "projects" / BETA / "keycheck").exists()
    assert not (repo / "manifests").exists()  # no operator's group: that part is not made
    # a drill of alpha restores through alpha's key: the recovered disks hold its data
    drill = api.drill("shop")
    assert drill.state is OperationState.SUCCEEDED, drill.error
    b = lab.site("site-b")
    assert any(MARKER in bytes(b.volumes[v.id][1]) for v in b.list_volumes())
    # beta's key, and the operator's repository key, cannot open alpha's part: exit 7
    with pytest.raises(WrongKey) as wrong:
        _open_part(lab, ALPHA, _key(BETA))
    assert wrong.value.exit_code == 7
    with pytest.raises(WrongKey):
        _open_part(lab, ALPHA, decode_key_file((lab.root / "repo.key").read_text()))
    # no object anywhere in the repository holds the disks' plaintext
    assert not [k for k, v in repository_files(repo).items() if MARKER in v]


def test_a_revoked_key_fails_protect_and_drill_with_exit_7_and_writes_nothing(lab: Lab) -> None:
    mark_disks(lab)
    own_group(lab, "shop", ALPHA)
    api.create_project_key("offsite", ALPHA)
    assert api.protect("shop").state is OperationState.SUCCEEDED
    repo = lab.root / "repo"
    before = repository_files(repo)
    res = runner.invoke(app, ["keys", "revoke", "offsite", ALPHA, "--json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    assert shown["action"] == "revoked" and "haven-project-key" not in res.stdout

    code, doc = _protect_json("shop")  # the operation's --json document
    assert code == 7 and doc["exit_code"] == 7 and doc["state"] == "failed", doc
    assert doc["error_type"] == "KeyRevoked"
    assert ALPHA in str(doc["error"]) and "revoked" in str(doc["error"])
    res = runner.invoke(app, ["drill", "shop", "--json"])
    assert res.exit_code == 7, res.output
    drill = json.loads(res.stdout)
    assert drill["error_type"] == "KeyRevoked" and ALPHA in drill["error"]
    # nothing new in the repository (locks aside, nothing at all), no plaintext anywhere
    after = repository_files(repo)
    assert after == before  # refused before the repository was opened: not even a lock
    assert not [k for k, v in after.items() if MARKER in v]
    # the key stays revoked: a new one is not made in its place
    with pytest.raises(ConflictError):
        api.create_project_key("offsite", ALPHA)


def test_a_removed_key_is_refused_not_replaced(lab: Lab) -> None:
    own_group(lab, "shop", ALPHA)
    api.create_project_key("offsite", ALPHA)
    assert api.protect("shop").state is OperationState.SUCCEEDED
    key_file = haven_home() / "keys" / "local" / f"{ALPHA}.key"
    key_file.unlink()
    code, doc = _protect_json("shop")
    assert code == 7 and doc["error_type"] == "KeyUnavailable", doc
    assert str(key_file) in str(doc["error"])
    assert not key_file.exists()  # no key made on the fly


def test_a_replaced_key_cannot_read_the_projects_data(lab: Lab) -> None:
    """A key file swapped for another (or for another project's) fails the key check."""
    own_group(lab, "shop", ALPHA)
    api.create_project_key("offsite", ALPHA)
    api.create_project_key("offsite", BETA)
    assert api.protect("shop").state is OperationState.SUCCEEDED
    keys = haven_home() / "keys" / "local"
    (keys / f"{ALPHA}.key").write_bytes((keys / f"{BETA}.key").read_bytes())
    connect.forget_all()
    code, doc = _protect_json("shop")
    assert code == 7 and doc["error_type"] == "WrongKey", doc


def test_a_group_without_project_keeps_the_repository_key(lab: Lab) -> None:
    """Operator-owned groups (project None) are today's behaviour: no project key needed."""
    assert api.protect("shop").state is OperationState.SUCCEEDED
    assert not (lab.root / "repo" / "projects").exists()
    assert list((lab.root / "repo" / "manifests").iterdir())


def test_a_project_id_that_is_no_path_part_is_refused(lab: Lab) -> None:
    own_group(lab, "shop", "../escape")
    code, doc = _protect_json("shop")
    assert code == 2 and "groups.shop.project" in str(doc["error"]), doc
    assert not (lab.root / "escape").exists()


def test_local_key_files_are_private_and_made_once(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = LocalKeyStore(tmp_path / "home" / "keys" / "local")
        ref = store.create(ALPHA)
    finally:
        os.umask(old)
    path = tmp_path / "home" / "keys" / "local" / f"{ALPHA}.key"
    assert str(path) in ref
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for d in (path.parent, path.parent.parent, path.parent.parent.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert len(store.project_key(ALPHA)) == 32
    with pytest.raises(ConflictError):
        store.create(ALPHA)
    path.chmod(0o644)  # readable by others: refused, not used
    with pytest.raises(KeyUnavailable, match="chmod 600"):
        store.project_key(ALPHA)
    path.chmod(0o600)
    store.revoke(ALPHA)
    with pytest.raises(KeyRevoked) as revoked:
        store.project_key(ALPHA)
    assert revoked.value.exit_code == 7 and revoked.value.http_status == 403
    assert ALPHA in str(revoked.value)
    with pytest.raises(KeyUnavailable, match="never created"):
        store.project_key(BETA)


def test_key_store_fields_are_checked_at_apply(lab: Lab) -> None:
    def apply(repo: dict[str, object]) -> tuple[int, str]:
        def edit(data: dict[str, object]) -> None:
            repos = data["repositories"]
            assert isinstance(repos, list)
            repos[0].update(repo)

        res = runner.invoke(app, ["apply", "-f", str(edited_spec(lab, edit)), "--json"])
        return res.exit_code, res.stdout

    code, out = apply({"key_store": "barbican"})
    assert code == 2 and "key_cloud" in out
    code, out = apply({"key_cloud": "haven"})
    assert code == 2 and "key_cloud is for key_store barbican" in out
    code, out = apply({"key_store": "vault"})
    assert code == 2 and "key_store" in out
    # a local store's keys are made, not registered
    ref = "http://127.0.0.1:9311/v1/secrets/3f1c6a52-7d0e-4a57-9a34-2b1d4c0f5e61"
    res = runner.invoke(app, ["keys", "register", "offsite", ALPHA, ref, "--json"])
    assert res.exit_code == 2 and "haven keys create" in res.stdout
    # barbican with its cloud is accepted; its keys are the tenants' to make and revoke
    assert apply({"key_store": "barbican", "key_cloud": "haven"})[0] == 0
    for action in ("create", "revoke"):
        res = runner.invoke(app, ["keys", action, "offsite", ALPHA, "--json"])
        assert res.exit_code == 2
        assert "repositories.offsite.key_store" in json.loads(res.stdout)["error"]["message"]


def test_repo_check_by_project_uses_the_projects_key(lab: Lab) -> None:
    own_group(lab, "shop", ALPHA)
    api.create_project_key("offsite", ALPHA)
    assert api.protect("shop").state is OperationState.SUCCEEDED
    res = runner.invoke(app, ["repo", "check", "offsite", "--project", ALPHA, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["manifests"] == len(SERVERS)
    # damage in alpha's part is found there and marks alpha's point
    manifests = sorted((lab.root / "repo" / "projects" / ALPHA / "manifests").iterdir())
    manifests[0].write_bytes(b"garbage")
    res = runner.invoke(app, ["repo", "check", "offsite", "--project", ALPHA, "--json"])
    assert res.exit_code == 6, res.output
    assert [c["group"] for c in json.loads(res.stdout)["points_damaged"]] == ["shop"]
    api.revoke_project_key("offsite", ALPHA)
    res = runner.invoke(app, ["repo", "check", "offsite", "--project", ALPHA, "--json"])
    assert res.exit_code == 7, res.output
    assert json.loads(res.stdout)["error"]["type"] == "KeyRevoked"
