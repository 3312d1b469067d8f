"""Repository ``credentials`` are checked at apply (exit 2 naming the field), not at the
first protect: none for local or memory repositories, only the names the backend takes,
and an s3:// repository must have an endpoint it can find. With S3 endpoint, keys and
region all from env references, apply + protect + failover work against the Swift
lab's S3 API (tests/integration/s3/test_engine_s3.py); here, what needs no lab."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from haven.cli.main import app
from tests.unit.engine.lab import Lab, edited_spec

runner = CliRunner()


def _apply(lab: Lab, repo: dict[str, Any], **env: str | None) -> tuple[int, dict[str, Any]]:
    def edit(data: dict[str, Any]) -> None:
        data["repositories"][0].update(repo)

    res = runner.invoke(app, ["apply", "-f", str(edited_spec(lab, edit)), "--json"], env=env)
    return res.exit_code, json.loads(res.stdout)


def _problems(doc: dict[str, Any]) -> dict[str, str]:
    return {p["path"]: p["message"] for p in doc["error"]["problems"]}


@pytest.mark.parametrize("url", [None, "memory://shop"])
def test_local_and_memory_repositories_take_no_credentials(lab: Lab, url: str | None) -> None:
    repo: dict[str, Any] = {"credentials": {"access_key": {"env": "KEY"}}}
    if url:
        repo["url"] = url
    code, doc = _apply(lab, repo)
    assert code == 2
    assert "takes no credentials" in _problems(doc)["repositories.offsite.credentials.access_key"]


def test_unknown_credentials_names_are_refused_with_the_valid_ones(lab: Lab) -> None:
    s3 = {
        "url": "s3://bucket/shop",
        "credentials": {"endpoint": {"env": "E"}, "acess_key": {"env": "K"}},
    }
    code, doc = _apply(lab, s3)
    assert code == 2
    message = _problems(doc)["repositories.offsite.credentials.acess_key"]
    assert "not a s3 setting" in message and "access_key" in message and "session_token" in message
    swift = {"url": "swift://container/shop", "credentials": {"password": {"env": "P"}}}
    code, doc = _apply(lab, swift)
    assert code == 2
    message = _problems(doc)["repositories.offsite.credentials.password"]
    assert "not a swift setting" in message and "auth_url" in message


def test_an_s3_repository_without_an_endpoint_is_refused_at_apply(lab: Lab) -> None:
    s3 = {"url": "s3://bucket/shop", "credentials": {"access_key": {"env": "K"}}}
    code, doc = _apply(lab, s3, HAVEN_S3_ENDPOINT=None, AWS_ENDPOINT_URL_S3=None,
                       AWS_ENDPOINT_URL=None)  # fmt: skip
    assert code == 2
    message = _problems(doc)["repositories.offsite.credentials.endpoint"]
    assert "needs its endpoint" in message and "HAVEN_S3_ENDPOINT" in message
    # from the applying process's environment, it is accepted
    code, _ = _apply(lab, s3, HAVEN_S3_ENDPOINT="http://127.0.0.1:9")
    assert code == 0


def test_an_endpoint_missing_at_first_use_names_the_repository(lab: Lab) -> None:
    """apply saw HAVEN_S3_ENDPOINT; the process that protects lacks it: exit 2, named."""
    s3 = {"url": "s3://bucket/shop", "credentials": {}}
    assert _apply(lab, s3, HAVEN_S3_ENDPOINT="http://127.0.0.1:9")[0] == 0
    res = runner.invoke(app, ["protect", "shop", "--json"], env={
        "HAVEN_S3_ENDPOINT": None, "AWS_ENDPOINT_URL_S3": None, "AWS_ENDPOINT_URL": None,
    })  # fmt: skip
    assert res.exit_code == 2, res.output
    error = json.loads(res.stdout)["error"]
    assert "repositories.offsite" in error and "HAVEN_S3_ENDPOINT" in error
