"""Repository fault injection: every kind of object, every kind of damage, then check,
restore, prune, a new backup and repair — nothing that was intact is lost, nothing wrong
is written, every problem is reported with the exit code of an integrity failure.

Each case damages one object of a real local repository (tests/support/faults.py) and
asserts the same invariants:
- ``check --read-data`` reports a problem exactly when something is damaged (harmless
  leftovers such as an unrecorded manifest or an orphan pack are warnings);
- every point the damage does not touch restores bit for bit; a damaged one either
  restores bit for bit or fails with exit 3 or 6, never with wrong bytes or a traceback;
- prune refuses (exit 6) while its own (structural) check finds problems and changes
  nothing; otherwise it runs and every intact point still restores (damage only a full
  read finds, such as a flipped byte in a pack, is copied or dropped, never spread);
- a new backup of an untouched volume works (or, on a rolled-back record, refuses with
  exit 6) and restores bit for bit;
- repair leaves a repository whose check problems are exactly the points it reports
  partial or lost; every point it calls intact restores bit for bit, and so does every
  point the damage did not touch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.faults import Fault, World, build_world, digest, inject, victim

from haven.datamover import (
    Repository,
    Salvage,
    backup_volume,
    check,
    prune,
    repair,
    restore_volume,
)
from haven.datamover.blockio import FileSource
from haven.datamover.errors import PruneRefused
from haven.datamover.manifest import MANIFEST_PREFIX
from haven.domain.errors import HavenError

F = Fault
# (object kind, fault, whether check must fail, which points the damage may break:
#  "b" = the volume whose pack/index/manifest is hit, "b+" = that and the swapped
#  sibling's, "" = none)
CASES = [
    ("pack", F.FLIP, True, "b"),
    ("pack", F.TRUNCATE, True, "b"),
    ("pack", F.DELETE, True, "b"),
    ("pack", F.DUPLICATE, False, ""),
    ("pack", F.SWAP, True, "b+"),
    ("index", F.FLIP, True, "b"),
    ("index", F.TRUNCATE, True, "b"),
    ("index", F.DELETE, True, "b"),
    ("index", F.DUPLICATE, True, ""),
    ("index", F.SWAP, True, "b+"),
    ("manifest", F.FLIP, True, "b"),
    ("manifest", F.TRUNCATE, True, "b"),
    ("manifest", F.DELETE, True, "b"),
    ("manifest", F.DUPLICATE, False, ""),
    ("manifest", F.SWAP, True, "b+"),
    ("manifest", F.STALE, False, ""),
    ("head", F.FLIP, True, ""),
    ("head", F.TRUNCATE, True, ""),
    ("head", F.DELETE, True, ""),
    ("head", F.DUPLICATE, True, ""),
    ("head", F.SWAP, True, ""),
    ("head", F.STALE, True, ""),
    ("keycheck", F.FLIP, False, ""),
    ("keycheck", F.DELETE, False, ""),
]


def _restores(repo: Repository, world: World, mid: str, tmp: Path) -> bool:
    """True if ``mid`` restores bit for bit; False if it fails as an integrity failure
    or a missing point. Anything else (wrong bytes, another error) fails the test."""
    out = tmp / f"out-{mid}"
    out.unlink(missing_ok=True)
    try:
        restore_volume(repo, mid, out)
    except HavenError as exc:
        assert exc.exit_code in (3, 6), f"{mid}: {type(exc).__name__} exit {exc.exit_code}: {exc}"
        return False
    assert digest(out.read_bytes()) == digest(world.sources[mid]), f"{mid}: wrong bytes"
    return True


def _at_risk(world: World, kind: str, key: str, scope: str) -> set[str]:
    """Manifest ids the damage may break."""
    if not scope:
        return set()
    keys = {key}
    if scope == "b+":
        keys |= _swapped_sibling(world, key)
    if kind == "manifest":
        return {k[len(MANIFEST_PREFIX) :] for k in keys}
    pack_ids = {k.rsplit("/", 1)[-1] for k in keys}
    by_pack = world.chunks_by_pack()
    hit = set().union(*(by_pack.get(p, set()) for p in pack_ids))
    return {mid for mid, chunks in world.needs().items() if chunks & hit}


def _swapped_sibling(world: World, key: str) -> set[str]:
    prefix = key.rsplit("/", 1)[0] if not key.startswith("data/") else "data/"
    return {next(k for k in world.keys_of(prefix) if k != key)}


def _objects(world: World) -> set[str]:
    return {k for k in world.keys_of("") if not k.startswith("locks/")}


@pytest.mark.parametrize(("kind", "fault", "detected", "scope"), CASES,
                         ids=[f"{k}-{f.value}" for k, f, _, _ in CASES])  # fmt: skip
def test_fault(tmp_path: Path, kind: str, fault: Fault, detected: bool, scope: str) -> None:
    world = build_world(tmp_path)
    key = victim(world, kind)
    at_risk = _at_risk(world, kind, key, scope)
    inject(world, key, fault)
    repo = world.open()

    report = check(repo, read_data=True)
    assert report.ok is not detected, report.problems or report.warnings
    for mid in at_risk:
        if not _restores(repo, world, mid, tmp_path):
            assert any(mid in p for p in report.affected_points) or report.damaged_objects
    for mid in world.sources.keys() - at_risk:
        assert _restores(repo, world, mid, tmp_path), f"{mid} was intact and is lost"

    before = _objects(world)
    if check(repo).ok:  # prune's own check reads structure, not every byte
        prune(repo)
    else:
        with pytest.raises(PruneRefused) as refused:
            prune(repo)
        assert refused.value.exit_code == 6
        assert _objects(world) == before, "a refused prune changed the repository"
    for mid in world.sources.keys() - at_risk:
        assert _restores(repo, world, mid, tmp_path), f"{mid} lost after prune"

    _new_point_of_c(repo, world, tmp_path, rolled_back=(kind, fault) == ("head", F.DELETE))

    fixed = repair(repo, read_data=True, accept_rollback=True)
    after = check(repo, read_data=True)
    broken = {p.manifest_id for p in fixed.points if p.salvage is not Salvage.INTACT}
    assert {d.manifest_id for d in after.damage} <= broken, after.problems
    # (a point forgotten by a damaged head may be reported lost: it was, on purpose)
    wrongly = (broken & world.sources.keys()) - at_risk
    assert not wrongly, f"repair reports untouched points broken: {wrongly}"
    assert not after.problems or broken, after.problems
    for p in fixed.points:
        if p.salvage is Salvage.INTACT and p.manifest_id in world.sources:
            assert _restores(repo, world, p.manifest_id, tmp_path)
    for mid in world.sources.keys() - at_risk:
        assert _restores(repo, world, mid, tmp_path), f"{mid} lost after repair"
    damaged = {f"{MANIFEST_PREFIX}{d.manifest_id}" for d in after.damage}
    prune(repo, forget_damaged=sorted(after.damaged_objects | damaged))
    for mid in world.sources.keys() - at_risk:
        assert _restores(repo, world, mid, tmp_path), f"{mid} lost after the final prune"
    assert check(repo, read_data=True).ok


def _new_point_of_c(repo: Repository, world: World, tmp: Path, rolled_back: bool) -> None:
    data = world.sources[max(m for m, v in world.volume_of.items() if v == "c")]
    img = tmp / "c-new.img"
    img.write_bytes(data[::-1])
    try:
        with FileSource(img) as src:
            res = backup_volume(repo, src, volume="c", point_id="p-new")
    except HavenError as exc:
        assert rolled_back and exc.exit_code == 6, exc
        return
    assert not rolled_back, "a backup was recorded on a rolled-back repository"
    world.sources[res.manifest.manifest_id] = data[::-1]
    world.volume_of[res.manifest.manifest_id] = "c"
    assert _restores(repo, world, res.manifest.manifest_id, tmp)


@pytest.mark.parametrize("fault", [F.FLIP, F.TRUNCATE, F.DELETE])
def test_config_fault_is_an_integrity_failure_not_a_wrong_key(tmp_path: Path, fault: Fault) -> None:
    world = build_world(tmp_path)
    inject(world, "config", fault)
    with pytest.raises(HavenError) as info:
        world.open()
    # a deleted config is "no repository here" (3); a damaged one is integrity (6), never 7
    assert info.value.exit_code == (3 if fault is F.DELETE else 6), info.value


def test_rollback_of_the_whole_record_is_noticed_by_the_host_that_saw_it(tmp_path: Path) -> None:
    """Deleting the newest manifest *and* the newest heads leaves a repository that is
    consistent in itself: only this host's memory of the newest head can tell."""
    world = build_world(tmp_path)
    newest = max(world.sources)
    for key in world.keys_of("heads/")[-1:]:
        inject(world, key, F.DELETE)
    inject(world, MANIFEST_PREFIX + newest, F.DELETE)
    report = check(world.open(), read_data=True)
    assert not report.ok
    assert any("rolled back" in p for p in report.problems), report.problems
