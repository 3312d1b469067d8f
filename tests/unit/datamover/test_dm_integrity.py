"""Integrity rules of format v2, each as an operator would meet it (mostly through the CLI):
objects of another repository refused under a shared key, a junk manifest that stops
nothing, the newest point's manifest deleted (never answered with an older point), key
envelopes whose scrypt cost is crafted, and what repair saves."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from tests.support.faults import Fault, build_world, digest, inject, victim
from typer.testing import CliRunner

from haven.cli.main import app
from haven.datamover import Repository, Salvage, check, new_master_key, repair, restore_volume
from haven.datamover.backends import LocalBackend
from haven.datamover.crypto import _envelope_check
from haven.datamover.errors import CorruptObject, KeyEnvelopeRefused
from haven.datamover.manifest import MANIFEST_PREFIX

runner = CliRunner()
KiB = 1024


def _cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout


def test_objects_of_another_repository_are_refused_under_a_shared_key(tmp_path: Path) -> None:
    a = build_world(tmp_path / "a")
    b_root = tmp_path / "b"
    b = Repository.init(LocalBackend(b_root), master_key=a.master, chunk_size=64 * KiB,
                        pack_size=256 * KiB)  # fmt: skip
    stranger = max(a.sources)
    for key in [MANIFEST_PREFIX + stranger, *a.keys_of("index/")[:1], *a.keys_of("heads/")[-1:]]:
        (b_root / key).parent.mkdir(parents=True, exist_ok=True)
        (b_root / key).write_bytes(a.path(key).read_bytes())
    assert b.manifests() == []  # a head from elsewhere does not open; nothing is listed
    report = check(b)
    assert not report.ok
    assert any(k.startswith("index/") for k in report.damaged_objects)
    assert any(k.startswith("heads/") for k in report.damaged_objects)
    with pytest.raises(CorruptObject):
        b.load_manifest(stranger)


def test_a_junk_manifest_stops_nothing(tmp_path: Path) -> None:
    world = build_world(tmp_path)
    (world.root / "manifests" / "junk").write_bytes(b"not a manifest")
    key = tmp_path / "key"
    key.write_text(__import__("haven.datamover", fromlist=["x"]).encode_key_file(world.master))
    r = ["--repo", str(world.root), "--key-file", str(key)]
    code, out = _cli("volume", "list", *r, "--json")
    assert code == 0, out
    assert {row["volume"] for row in json.loads(out)} == {"a", "b", "c"}
    assert _cli("repo", "stats", *r, "--json")[0] == 0
    code, out = _cli("volume", "restore", "b", str(tmp_path / "b.out"), *r, "--json")
    assert code == 0, out
    newest_b = max(m for m, v in world.volume_of.items() if v == "b")
    assert digest((tmp_path / "b.out").read_bytes()) == digest(world.sources[newest_b])
    img = tmp_path / "new.img"
    img.write_bytes(os.urandom(300 * KiB))
    assert _cli("volume", "backup", str(img), "--volume", "b", *r, "--json")[0] == 0
    code, out = _cli("repo", "check", *r, "--json")
    assert code == 0 and any("junk" in w for w in json.loads(out)["warnings"]), out


def test_deleting_the_newest_manifest_is_noticed_and_never_answered_with_an_older_point(
    tmp_path: Path,
) -> None:
    world = build_world(tmp_path)
    newest_b = victim(world, "manifest")
    inject(world, newest_b, Fault.DELETE)
    repo = world.open()
    report = check(repo)
    assert not report.ok and newest_b in report.damaged_objects
    with pytest.raises(CorruptObject) as info:
        restore_volume(repo, "b", tmp_path / "out")
    assert info.value.exit_code == 6 and "rolled back" in str(info.value)
    assert not (tmp_path / "out").exists()


def _envelope(log_n: int, r: int, p: int) -> bytes:
    doc: dict[str, object] = {
        "version": 2, "kdf": "scrypt", "log_n": log_n, "r": r, "p": p,
        "salt": "AAAAAAAAAAAAAAAAAAAAAA==", "nonce": "AAAAAAAAAAAAAAAA",
        "wrapped": "A" * 64,
    }  # fmt: skip
    doc["check"] = _envelope_check(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("log_n", "r", "p"), [(30, 8, 1), (20, 64, 1), (17, 8, 64), (24, 1, 1)])
def test_a_crafted_key_envelope_is_refused_before_any_work(
    tmp_path: Path, log_n: int, r: int, p: int
) -> None:
    root = tmp_path / "repo"
    Repository.init(LocalBackend(root), password="pw", scrypt=None)
    (root / "keys" / "default").write_bytes(_envelope(log_n, r, p))
    started = time.monotonic()
    with pytest.raises(KeyEnvelopeRefused) as info:
        Repository.open(LocalBackend(root), password="pw")
    assert info.value.exit_code == 7 and "refused" in str(info.value)
    assert time.monotonic() - started < 1.0
    pw = tmp_path / "pw"
    pw.write_text("pw")
    code, out = _cli("repo", "check", "--repo", str(root), "--password-file", str(pw), "--json")
    assert code == 7 and json.loads(out)["error"]["type"] == "KeyEnvelopeRefused"


def test_a_damaged_config_is_integrity_and_a_wrong_key_is_security(tmp_path: Path) -> None:
    world = build_world(tmp_path)
    wrong, right = tmp_path / "wrong", tmp_path / "right"
    from haven.datamover import encode_key_file

    wrong.write_text(encode_key_file(new_master_key()))
    right.write_text(encode_key_file(world.master))
    r = ["--repo", str(world.root)]
    assert _cli("repo", "check", *r, "--key-file", str(wrong))[0] == 7
    inject(world, "config", Fault.FLIP)
    assert _cli("repo", "check", *r, "--key-file", str(right))[0] == 6
    assert _cli("repo", "check", *r, "--key-file", str(wrong))[0] == 7


def test_repair_of_a_deleted_index_and_a_truncated_pack(tmp_path: Path) -> None:
    """The issue's figure: one index deleted, one pack truncated. Printed for the note."""
    world = build_world(tmp_path)
    index = victim(world, "index")  # volume b's
    by_pack = world.chunks_by_pack()
    needs = world.needs()
    a_chunks = set().union(*(c for m, c in needs.items() if world.volume_of[m] == "a"))
    pack = next(
        f"data/{p[:2]}/{p}" for p, c in sorted(by_pack.items())
        if c & a_chunks and f"index/{p}" != index
    )  # fmt: skip
    inject(world, index, Fault.DELETE)
    inject(world, pack, Fault.TRUNCATE)
    key = tmp_path / "key"
    from haven.datamover import encode_key_file

    key.write_text(encode_key_file(world.master))
    r = ["--repo", str(world.root), "--key-file", str(key)]
    assert _cli("repo", "prune", *r)[0] == 6  # refused: damaged
    code, out = _cli("repo", "repair", *r, "--read-data", "--json")
    report = json.loads(out)
    print("repair:", report["counts"], "salvaged chunks:", report["chunks_salvaged"])
    assert code == 6  # some chunks of the truncated pack are gone for good
    assert report["counts"]["lost"] == 0
    assert report["counts"]["partial"] >= 1 and report["counts"]["intact"] >= 5
    assert any(a.startswith("rebuilt index/") for a in report["actions"])
    repo = world.open()
    fixed = repair(repo, read_data=True)  # a second run finds nothing more to do
    assert not fixed.actions
    for p in fixed.points:
        out_path = tmp_path / f"r-{p.manifest_id}"
        if p.salvage is Salvage.INTACT:
            restore_volume(repo, p.manifest_id, out_path)
            assert digest(out_path.read_bytes()) == digest(world.sources[p.manifest_id])
        else:
            assert world.volume_of[p.manifest_id] == "a"
    assert any(k.startswith("quarantine/data/") for k in world.keys_of("quarantine/"))
