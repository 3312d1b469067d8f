"""The Barbican key store without Barbican: what it refuses before asking, and a
Keystone that does not answer (exit 5, retryable, never a key). With the lab's Barbican:
tests/integration/keystone/test_barbican_keys.py."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from haven.domain.errors import KeyStoreUnreachable, KeyUnavailable, ValidationError
from haven.keystores.barbican import BarbicanKeyStore

PROJECT = "0a1fa1fa0a1fa1fa0a1fa1fa0a1fa1fa"
SECRET = "http://127.0.0.1:9311/v1/secrets/3f1c6a52-7d0e-4a57-9a34-2b1d4c0f5e61"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BarbicanKeyStore:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(json.dumps({"clouds": {"nowhere": {
        "auth": {"auth_url": "http://127.0.0.1:9/v3", "username": "haven",
                 "password": "not-used-anywhere", "project_name": "service",
                 "user_domain_name": "Default", "project_domain_name": "Default"},
        "region_name": "RegionOne"}}}))  # fmt: skip
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    return BarbicanKeyStore("nowhere", tmp_path / "keys" / "barbican", "repositories.r.key_cloud")


def test_an_unregistered_project_is_unavailable(store: BarbicanKeyStore) -> None:
    with pytest.raises(KeyUnavailable, match="haven keys register") as err:
        store.project_key(PROJECT)
    assert err.value.exit_code == 7 and PROJECT in str(err.value)


def test_a_reference_is_checked_and_kept_privately(store: BarbicanKeyStore) -> None:
    with pytest.raises(ValidationError, match="v1/secrets"):
        store.register(PROJECT, "file:///etc/passwd")
    assert store.register(PROJECT, SECRET) == f"barbican secret {SECRET}"
    path = store.directory / f"{PROJECT}.ref"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700


def test_keystone_not_answering_is_retryable_and_names_no_secret(store: BarbicanKeyStore) -> None:
    store.register(PROJECT, SECRET)
    with pytest.raises(KeyStoreUnreachable) as err:
        store.project_key(PROJECT)
    assert err.value.exit_code == 5 and err.value.retryable
    assert "not-used-anywhere" not in str(err.value)


def test_an_unknown_cloud_names_the_field(store: BarbicanKeyStore, tmp_path: Path) -> None:
    other = BarbicanKeyStore("no-such-cloud", tmp_path / "k", "repositories.r.key_cloud")
    other.register(PROJECT, SECRET)
    with pytest.raises(ValidationError) as err:
        other.project_key(PROJECT)
    assert err.value.path == "repositories.r.key_cloud" and "no-such-cloud" in err.value.message
