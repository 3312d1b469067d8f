"""Per-project keys in the lab's real Barbican (docs/keys.md), Haven reading them as its
service user through castellan; the disks are fake sites, the repository a directory.

A tenant (alpha-member) stores dr-alpha's data key in Barbican and grants Haven's user
``haven`` read access through the secret's ACL; Haven protects and drills a group of
dr-alpha. beta's key cannot read alpha's part. The tenant removes the ACL: the next
protect and drill fail with exit 7 (KeyRevoked, in the --json shape), nothing is
written, no plaintext anywhere; beta deletes its secret: the same for beta.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from haven.catalog.db import haven_home
from haven.cli.main import app
from haven.datamover import Repository as DataRepository
from haven.datamover import open_backend
from haven.datamover.errors import WrongKey
from haven.domain.errors import NotFoundError
from haven.domain.operations import OperationState
from haven.engine import api
from haven.engine.scope import Scope
from tests.support.api import app_for, as_, wait_done
from tests.support.identity_lab import IdentityLab, barbican_lab
from tests.unit.engine.conftest import LabFactory, lab_with  # noqa: F401  (the fixture)
from tests.unit.engine.lab import (
    MARKER,
    Lab,
    edited_spec,
    mark_disks,
    own_group,
    repository_files,
)

pytestmark = pytest.mark.keystone
runner = CliRunner()
CLOUD = "haven-keys"


def _barbican(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        url, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"X-Auth-Token": token, "Content-Type": "application/json",
                 "Accept": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as r:
        data = r.read()
        return json.loads(data) if data else None


def _tenant_key(lab: IdentityLab, barbican: str, user: str, haven_id: str) -> tuple[str, bytes]:
    """``user`` stores a new 256-bit key in its project's Barbican and lets Haven's user
    read it: (secret href, key)."""
    token = lab.token(user)
    key = os.urandom(32)
    made = _barbican("POST", f"{barbican}/v1/secrets", token, {
        "name": "haven-data-key", "secret_type": "symmetric", "algorithm": "aes",
        "bit_length": 256, "mode": "gcm", "payload": base64.b64encode(key).decode(),
        "payload_content_type": "application/octet-stream",
        "payload_content_encoding": "base64",
    })  # fmt: skip
    ref = str(made["secret_ref"])
    _barbican("PUT", f"{ref}/acl", token, {"read": {"users": [haven_id], "project-access": True}})
    return ref, key


def _clouds_yaml(lab: IdentityLab, path: Path) -> Path:
    """Haven's service user as a clouds.yaml entry (the repository's key_cloud)."""
    path.write_text(json.dumps({"clouds": {CLOUD: {
        "auth": {"auth_url": lab.auth_url, "username": lab.service_user,
                 "password": lab.password, "project_name": lab.service_project,
                 "user_domain_name": "Default", "project_domain_name": "Default"},
        "region_name": "RegionOne", "identity_api_version": 3,
    }}}))  # fmt: skip
    return path


def _cli(*argv: str) -> tuple[int, dict[str, Any]]:
    res = runner.invoke(app, [*argv, "--json"])
    return res.exit_code, json.loads(res.stdout)


def _open_part(lab: Lab, project: str, key: bytes) -> DataRepository:
    backend = open_backend(str(lab.root / "repo" / "projects" / project))
    return DataRepository.open(backend, master_key=key, state_dir=haven_home() / "r")


def test_tenant_keys_in_barbican_protect_and_their_revocation_stops_haven(
    lab_with: LabFactory,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ident, barbican = barbican_lab()
    alpha, beta = ident.projects["dr-alpha"], ident.projects["dr-beta"]
    _token, haven_id = ident.login(ident.service_user)
    alpha_ref, alpha_key = _tenant_key(ident, barbican, "alpha-member", haven_id)
    beta_ref, beta_key = _tenant_key(ident, barbican, "beta-member", haven_id)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(_clouds_yaml(ident, tmp_path / "c.yaml")))

    lab = lab_with()
    spec = edited_spec(lab, lambda d: d["repositories"][0].update(
        {"key_store": "barbican", "key_cloud": CLOUD}))  # fmt: skip
    assert runner.invoke(app, ["apply", "-f", str(spec)]).exit_code == 0
    mark_disks(lab)
    own_group(lab, "shop", alpha)
    own_group(lab, "shop-b", beta)
    for project, ref in ((alpha, alpha_ref), (beta, beta_ref)):
        code, shown = _cli("keys", "register", "offsite", project, ref)
        assert code == 0 and shown["key"] == f"barbican secret {ref}", shown

    for group in ("shop", "shop-b"):
        op = api.protect(group)
        assert op.state is OperationState.SUCCEEDED, op.error
    drill = api.drill("shop")
    assert drill.state is OperationState.SUCCEEDED, drill.error
    assert api.cleanup(drill.id).state is OperationState.SUCCEEDED
    # alpha's part is under alpha's Barbican key; beta's key cannot open it (exit 7)
    _open_part(lab, alpha, alpha_key).close()
    with pytest.raises(WrongKey) as wrong:
        _open_part(lab, alpha, beta_key)
    assert wrong.value.exit_code == 7

    # the tenant withdraws Haven's access: protect and drill fail with exit 7, no write
    repo = lab.root / "repo"
    before = repository_files(repo)
    _barbican("DELETE", f"{alpha_ref}/acl", ident.token("alpha-member"))
    code, doc = _cli("protect", "shop")
    assert code == 7 and doc["error_type"] == "KeyRevoked", doc
    assert alpha in doc["error"] and alpha_ref in doc["error"] and "403" in doc["error"]
    code, doc = _cli("drill", "shop")
    assert code == 7 and doc["error_type"] == "KeyRevoked", doc
    # the secret deleted by its owner: the same for beta
    _barbican("DELETE", beta_ref, ident.token("beta-member"))
    code, doc = _cli("protect", "shop-b")
    assert code == 7 and doc["error_type"] == "KeyRevoked", doc
    assert beta in doc["error"] and "gone" in doc["error"]
    after = repository_files(repo)
    assert after == before
    assert not [k for k, v in after.items() if MARKER in v]
    # no key material in anything Haven printed
    for key in (alpha_key, beta_key):
        assert base64.b64encode(key).decode() not in json.dumps(doc)
    # the tenant grants access again: Haven protects again, in the same part, same key
    _barbican("PUT", f"{alpha_ref}/acl", ident.token("alpha-member"),
              {"read": {"users": [haven_id], "project-access": True}})  # fmt: skip
    assert api.protect("shop").state is OperationState.SUCCEEDED
    part = _open_part(lab, alpha, alpha_key)
    assert len({m.point_id for m in part.manifests()}) == 2  # before and after revocation
    part.close()


def test_a_tenant_registers_its_barbican_key_through_the_api(
    lab_with: LabFactory,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PUT /v1/keys/offsite: a project's manager records the Barbican secret holding its
    data key (a member may not: a new key hides the data under the old one); the next
    protect submitted through the API writes its part under that key. Another project's
    key is out of a project's scope; a reference that is no secret reference is 422."""
    ident, barbican = barbican_lab()
    alpha, beta = ident.projects["dr-alpha"], ident.projects["dr-beta"]
    _token, haven_id = ident.login(ident.service_user)
    alpha_ref, alpha_key = _tenant_key(ident, barbican, "alpha-member", haven_id)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(_clouds_yaml(ident, tmp_path / "c.yaml")))
    lab = lab_with()
    spec = edited_spec(lab, lambda d: d["repositories"][0].update(
        {"key_store": "barbican", "key_cloud": CLOUD}))  # fmt: skip
    assert runner.invoke(app, ["apply", "-f", str(spec)]).exit_code == 0
    mark_disks(lab)
    own_group(lab, "shop", alpha)
    client = TestClient(app_for(ident.auth_url, ident.password))
    manager, member = ident.token("alpha-manager"), ident.token("alpha-member")
    url, body = "/v1/keys/offsite", {"secret_ref": alpha_ref}

    assert client.put(url, json=body, headers=as_(member)).status_code == 403
    bad = client.put(url, json={"secret_ref": "../../etc"}, headers=as_(manager))
    assert bad.status_code == 422 and bad.json()["error"]["problems"][0]["path"] == "ref"
    with pytest.raises(NotFoundError):
        api.register_project_key("offsite", alpha, alpha_ref, Scope.of(beta))
    other = client.put(f"{url}?project={beta}", json=body, headers=as_(manager))
    assert other.status_code == 404 and other.json()["error"]["type"] == "NotFoundError"

    done = client.put(url, json=body, headers=as_(manager))
    assert done.status_code == 200, done.text
    assert done.json() == {"repository": "offsite", "project": alpha,
                           "key": f"barbican secret {alpha_ref}"}  # fmt: skip
    assert base64.b64encode(alpha_key).decode() not in done.text
    sub = client.post("/v1/operations", json={"kind": "protect", "group": "shop"},
                      headers=as_(manager))  # fmt: skip
    assert sub.status_code == 202, sub.text
    assert wait_done(client, manager, sub.json()["id"])["state"] == "succeeded"
    part = _open_part(lab, alpha, alpha_key)  # the data is under the tenant's own key
    assert len(part.manifests()) > 0
    part.close()
