"""The ``haven`` command as operators run it: exit codes, --json, catalog untouched on error."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from tests.support.cli import EXAMPLE, haven


def dump(home: Path) -> list[str]:
    with sqlite3.connect(home / "catalog.db") as conn:
        return list(conn.iterdump())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    result = haven(h, "apply", "-f", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    return h


def test_reapply_says_nothing_changed(home: Path) -> None:
    result = haven(home, "apply", "-f", str(EXAMPLE))
    assert result.returncode == 0
    assert "no changes: the catalog already matches the spec" in result.stdout


def test_changed_file_shows_what_changes(home: Path, tmp_path: Path) -> None:
    changed = tmp_path / "changed.yaml"
    changed.write_text(EXAMPLE.read_text().replace("rpo: 5m", "rpo: 15m"))
    result = haven(home, "apply", "-f", str(changed), "--json")
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    (update,) = [c for c in doc["changes"] if c["action"] == "update"]
    assert update == {
        "kind": "policy",
        "name": "gold",
        "action": "update",
        "fields": [{"path": "rpo_seconds", "old": 300, "new": 900}],
    }


BAD_INPUTS = {
    "invalid-yaml": (b"sites: [\n", "invalid YAML at line"),
    "list-for-mapping": (b"- a\n- b\n", "expected a mapping of kinds"),
    "negative-rpo": (
        EXAMPLE.read_bytes().replace(b"rpo: 5m", b"rpo: -5m"),
        "policies.gold.rpo: '-5m' is negative",
    ),
    "parsecs": (
        EXAMPLE.read_bytes().replace(b"rpo: 5m", b"rpo: 5 parsecs"),
        "policies.gold.rpo: '5 parsecs' is not a duration",
    ),
    "self-dependency": (
        EXAMPLE.read_bytes().replace(b"depends_on: [app]", b"depends_on: [web]"),
        "a stage cannot depend on itself",
    ),
    "non-utf8": (b"sites:\n  - name: \xff\xfe\n", "not valid UTF-8"),
    "huge": (b"#" * (10 * 1024 * 1024), "spec file is 10.5 MB"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_and_leaves_the_catalog_unchanged(
    home: Path, tmp_path: Path, case: str
) -> None:
    content, expected = BAD_INPUTS[case]
    before = dump(home)
    spec = tmp_path / f"{case}.yaml"
    spec.write_bytes(content)
    result = haven(home, "apply", "-f", str(spec))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert dump(home) == before


def test_two_groups_claiming_one_server_via_stdin(home: Path) -> None:
    before = dump(home)
    spec = (
        b"groups:\n  - {name: other, source: site-a, target: site-b, policy: gold,\n"
        b"     repository: offsite, members: [{server: db}]}\n"
    )
    result = haven(home, "apply", "-f", "-", "--json", stdin=spec)
    assert result.returncode == 2
    problems = json.loads(result.stdout)["error"]["problems"]
    assert problems == [
        {
            "path": "groups.other.members[0]",
            "message": "server 'db' at site 'site-a' is already in group 'shop'; "
            "a server belongs to one group",
        }
    ]
    assert dump(home) == before


def test_get_and_describe_json(home: Path) -> None:
    groups = json.loads(haven(home, "get", "groups", "--json").stdout)
    assert [g["name"] for g in groups] == ["shop"]
    assert [m["ref"] for m in groups[0]["members"]] == ["db", "app", "web"]
    desc = json.loads(haven(home, "describe", "group", "shop", "--json").stdout)
    assert desc["state"] == "unprotected" and desc["generation"] == 1
    missing = haven(home, "describe", "plan", "nope")
    assert missing.returncode == 3 and "no plan named 'nope' (known: shop)" in missing.stderr
    bad_kind = haven(home, "get", "widgets")
    assert bad_kind.returncode == 2 and "unknown kind 'widgets'" in bad_kind.stderr


def test_config_show_redacts_secrets(home: Path) -> None:
    secret = "correct-horse-battery-staple"
    pg = "postgresql+psycopg://haven:pg-secret-99@127.0.0.1:1/x"
    shown = haven(home, "config", "show", "--json", env={"HAVEN_REPO_PASSWORD": secret})
    assert shown.returncode == 0
    cfg = json.loads(shown.stdout)
    assert cfg["secrets"]["repositories.offsite"]["password"] == {
        "source": "env",
        "name": "HAVEN_REPO_PASSWORD",
        "value": "***",
        "present": True,
    }
    assert secret not in shown.stdout + shown.stderr
    # a catalog URL with a password is shown redacted even when it cannot be opened
    failed = haven(home, "config", "show", env={"HAVEN_CATALOG_URL": pg})
    assert failed.returncode == 5
    assert "pg-secret-99" not in failed.stdout + failed.stderr
    assert "***" in failed.stderr
