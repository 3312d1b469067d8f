"""``haven repo init|check|prune|stats|unlock``: manage a data-mover repository.

``haven repo check|repair NAME`` works from the catalog's definition of repository NAME
(its url and passphrase or key file reference; see haven.engine.repos) and updates the
catalog's points from what it finds. Otherwise the repository location is ``--repo`` (or
env ``HAVEN_REPO``): a local path, ``swift://container/prefix`` (settings from
``HAVEN_SWIFT_*``) or ``s3://bucket/prefix`` (settings from ``HAVEN_S3_ENDPOINT``,
``_REGION``, ``_ACCESS_KEY``, ``_SECRET_KEY``; see haven.datamover.backends.s3); the remote
ones need the extra ``haven-dr[swift]`` / ``haven-dr[s3]``. The key comes from
``--password-file``, env ``HAVEN_REPO_PASSWORD`` or ``--key-file``; it is never printed
or logged.

Password and key files (read by :func:`haven.observability.secretfiles.read_secret_file`,
at most 64 KiB): a file that cannot be read -- missing, no permission, a directory, too
large to be a passphrase or key -- is a bad argument (exit 2, naming the option); a file
that was read but holds no key material -- not UTF-8 text, not a Haven key file -- is a
security failure (exit 7, like a wrong key). Neither message shows the content.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from haven.catalog.db import repository_state_dir
from haven.cli.bounds import finite
from haven.cli.output import JSON_OPTION, console, err_console, escape, guarded, print_json
from haven.datamover import Progress as DMProgress
from haven.datamover import (
    Repository,
    RetentionPolicy,
    check,
    decode_key_file,
    encode_key_file,
    new_master_key,
    open_backend,
    prune,
    repo_stats,
)
from haven.datamover.errors import InvalidArgument, KeyMissing, RepositoryCheckFailed, WrongKey
from haven.datamover.locks import LOCK_PREFIX, read_locks
from haven.datamover.repair import RepairReport, Salvage, repair
from haven.domain.errors import ExitCode, NotFoundError
from haven.observability.logging import register_secret
from haven.observability.secretfiles import SecretFileError, read_secret_file

app = typer.Typer(
    help="Create, check, prune and inspect backup repositories.", no_args_is_help=True
)

REPO_OPTION = typer.Option(
    ...,
    "--repo",
    envvar="HAVEN_REPO",
    help="Repository location: a directory, swift://container/prefix or s3://bucket/prefix "
    "(S3 endpoint and keys from HAVEN_S3_ENDPOINT, _REGION, _ACCESS_KEY, _SECRET_KEY).",
)
PASSWORD_FILE_OPTION = typer.Option(
    None,
    "--password-file",
    help="File holding the repository passphrase (else env HAVEN_REPO_PASSWORD).",
)
KEY_FILE_OPTION = typer.Option(
    None,
    "--key-file",
    envvar="HAVEN_REPO_KEY_FILE",
    help="Repository key file (instead of a passphrase).",
)
LIMIT_OPTION = typer.Option(None, "--limit", help="Bandwidth cap, e.g. 50MiB/s.")
PROJECT_OPTION = typer.Option(
    None, "--project", help="With NAME: the part of that Keystone project (its own key)."
)

_SIZES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_MAX_SIZE = 1 << 40  # far above any chunk or pack size the data mover accepts


def parse_size(text: str, field: str) -> int:
    """A positive byte size such as ``1MiB`` or ``65536`` (K, M, G are powers of 1024)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        number = float(t[:-1]) * _SIZES[t[-1]] if t and t[-1] in _SIZES else int(t)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and 0 < number <= _MAX_SIZE):
        raise InvalidArgument(
            field, f"not a size: {text[:40]!r} (a positive size up to 1TiB, e.g. 1MiB)"
        )
    return int(number)


def read_password(password_file: Path | None) -> str | None:
    """The passphrase, registered so that no log line can show it."""
    if password_file is not None:
        try:
            password: str | None = read_secret_file(password_file).rstrip("\r\n")
        except SecretFileError as exc:
            if exc.unreadable:
                raise InvalidArgument("--password-file", f"{password_file}: {exc.reason}") from None
            raise WrongKey(
                f"--password-file {password_file} {exc.reason}: it holds no passphrase"
            ) from None
    else:
        password = os.environ.get("HAVEN_REPO_PASSWORD")
    register_secret(password)
    return password


def read_key_file(key_file: Path) -> bytes:
    try:
        text = read_secret_file(key_file)
    except SecretFileError as exc:
        if exc.unreadable:
            raise InvalidArgument("--key-file", f"{key_file}: {exc.reason}") from None
        raise WrongKey(f"not a Haven repository key file: {key_file} {exc.reason}") from None
    return decode_key_file(text)


def open_repo(
    url: str, password_file: Path | None, key_file: Path | None, limit: str | None = None
) -> Repository:
    backend = open_backend(url, limit=limit)
    if key_file is not None:
        return Repository.open(
            backend, master_key=read_key_file(key_file), state_dir=repository_state_dir()
        )
    return Repository.open(
        backend, password=read_password(password_file), state_dir=repository_state_dir()
    )


@contextlib.contextmanager
def progress_bar(enabled: bool, label: str) -> Iterator[Callable[[DMProgress], None] | None]:
    """A Rich progress bar on stderr fed by data-mover progress callbacks."""
    if not enabled:
        yield None
        return
    bar = Progress(
        TextColumn(escape(label)),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    task = bar.add_task(label, total=None)
    with bar:

        def update(p: DMProgress) -> None:
            bar.update(task, completed=p.bytes_done, total=p.bytes_total)

        yield update


@app.command("init")
@guarded
def init(
    repo: str = REPO_OPTION,
    password_file: Path | None = PASSWORD_FILE_OPTION,
    key_file: Path | None = typer.Option(
        None,
        "--key-file",
        help="Use a key file instead of a passphrase; created (0600) "
        "if it does not exist. Keep it safe: it is the only way to open the repository.",
    ),
    chunk_size: str = typer.Option("1MiB", help="Chunk size, power of two 64KiB-16MiB."),
    pack_size: str = typer.Option("32MiB", help="Target pack size."),
    compression: int = typer.Option(1, min=0, max=19, help="zstd level (0 = off)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a new encrypted repository."""
    backend = open_backend(repo)
    cs, ps = parse_size(chunk_size, "--chunk-size"), parse_size(pack_size, "--pack-size")
    if key_file is not None:
        if key_file.exists():
            master = read_key_file(key_file)
        else:
            master = new_master_key()
            try:
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as exc:  # no such directory, a name too long, not writable
                raise InvalidArgument(
                    "--key-file", f"cannot create {str(key_file)[:80]}: {exc.strerror}"
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(encode_key_file(master))
        r = Repository.init(
            backend, master_key=master, chunk_size=cs, pack_size=ps, compression_level=compression,
            state_dir=repository_state_dir(),
        )  # fmt: skip
    else:
        password = read_password(password_file)
        if not password:
            raise KeyMissing("give --password-file, HAVEN_REPO_PASSWORD or --key-file")
        r = Repository.init(
            backend, password=password, chunk_size=cs, pack_size=ps, compression_level=compression,
            state_dir=repository_state_dir(),
        )  # fmt: skip
    out = {
        "location": backend.describe(),
        "repo_id": r.config.repo_id,
        "chunk_size": r.config.chunk_size,
        "pack_size": r.config.pack_size,
        "key": "key file" if key_file else "passphrase",
    }
    if as_json:
        print_json(out)
    else:
        console.print(f"created repository {r.config.repo_id} at {out['location']}", markup=False)


@app.command("check")
@guarded
def check_cmd(
    name: str | None = typer.Argument(
        None, help="A repository of the catalog (its url and key from there); or --repo."
    ),
    repo: str | None = typer.Option(
        None,
        "--repo",
        envvar="HAVEN_REPO",
        help="Repository location, when no NAME is given (key: --password-file, "
        "HAVEN_REPO_PASSWORD or --key-file).",
    ),
    password_file: Path | None = PASSWORD_FILE_OPTION,
    key_file: Path | None = KEY_FILE_OPTION,
    read_data: bool = typer.Option(
        False, "--read-data", help="Read every pack and verify every chunk's tag."
    ),
    project: str | None = PROJECT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Verify structure, references and (with --read-data) every object's tag.

    Exits 6 and names the affected recovery points if anything is missing or corrupt.
    By NAME, the catalog follows: points with damaged data are marked damaged (haven
    points GROUP shows them); with --read-data, damaged points found whole again are
    committed again."""
    if name is not None:
        _check_named(name, read_data, as_json, project)
        return
    if project is not None:
        raise InvalidArgument("--project", "a project's part is checked by repository NAME")
    if not repo:
        raise InvalidArgument("NAME", "give a repository NAME from the catalog, or --repo URL")
    r = open_repo(repo, password_file, key_file)
    with progress_bar(read_data and not as_json, "check") as cb:
        report = check(r, read_data=read_data, progress=cb)
    if as_json:
        print_json({"ok": report.ok, **_report_dict(report)})
        if not report.ok:
            raise typer.Exit(int(ExitCode.INTEGRITY))
        return
    for w in report.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    console.print(
        f"{report.manifests} manifests, {report.packs} packs, {report.chunks} chunks"
        + (f", {report.bytes_read} bytes read" if read_data else "")
    )
    report.raise_for_problems()
    console.print("no problems found")


def _check_named(name: str, read_data: bool, as_json: bool, project: str | None) -> None:
    from haven.domain.points import name_objects
    from haven.engine import api

    with progress_bar(read_data and not as_json, "check") as cb:
        result = api.check_repository(name, read_data=read_data, progress=cb, project=project)
    report = result.report
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "repository": name,
                **_report_dict(report),
                "catalog_problems": result.catalog_problems,
                "points_damaged": result.damaged,
                "points_intact_again": result.intact_again,
            }
        )
        if not result.ok:
            raise typer.Exit(int(ExitCode.INTEGRITY))
        return
    for w in report.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    console.print(
        f"{name}: {report.manifests} manifests, {report.packs} packs, {report.chunks} chunks"
        + (f", {report.bytes_read} bytes read" if read_data else "")
    )
    for c in result.damaged:
        console.print(
            f"  point {c.point} of {c.group}: damaged ({name_objects(c.objects)}: {c.reason})",
            highlight=False,
            markup=False,
        )
    for c in result.intact_again:
        console.print(
            f"  point {c.point} of {c.group}: intact again (committed)",
            highlight=False,
            markup=False,
        )
    if not result.ok:
        raise RepositoryCheckFailed(result.problems, report.affected_points)
    console.print("no problems found")


def _report_dict(report: Any) -> dict[str, Any]:
    return {k: getattr(report, k) for k in report.__slots__}


@app.command("prune")
@guarded
def prune_cmd(
    repo: str = REPO_OPTION,
    password_file: Path | None = PASSWORD_FILE_OPTION,
    key_file: Path | None = KEY_FILE_OPTION,
    keep_last: int = typer.Option(0, min=0, help="Keep the N newest points per volume."),
    keep_hourly: int = typer.Option(0, min=0, help="Keep the newest point of each of N hours."),
    keep_daily: int = typer.Option(0, min=0, help="... of each of N days."),
    keep_weekly: int = typer.Option(0, min=0, help="... of each of N ISO weeks."),
    keep_monthly: int = typer.Option(0, min=0, help="... of each of N months."),
    repack_threshold: float = typer.Option(
        0.5, min=0.0, max=1.0, callback=finite, help="Repack packs less than this live (0-1)."
    ),
    forget: list[str] = typer.Option(
        [], "--forget", help="Also forget this manifest id (repeatable)."
    ),
    forget_damaged: list[str] = typer.Option(
        [],
        "--forget-damaged",
        help="Prune a damaged repository anyway, forgetting this damaged object "
        "(repeatable; name every one `haven repo check` reports, e.g. manifests/ID).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be done."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Forget points outside the retention policy and delete unreferenced data.

    Without any --keep-* option no point is forgotten (only garbage is collected).
    Refuses to run (exit 6) on a repository with any check problem: run
    `haven repo repair` first, or name each damaged object with --forget-damaged."""
    policy = RetentionPolicy(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly)
    r = open_repo(repo, password_file, key_file)
    stats = prune(
        r,
        None if policy.is_empty() else policy,
        dry_run=dry_run,
        repack_threshold=repack_threshold,
        forget_ids=forget,
        forget_damaged=forget_damaged,
    )
    if as_json:
        print_json(stats)
        return
    verb = "would forget" if dry_run else "forgot"
    console.print(
        f"{verb} {len(stats.forgotten)} point(s), kept {stats.kept}; packs: "
        f"{stats.packs_deleted} deleted, {stats.packs_repacked} repacked, "
        f"{stats.orphan_packs_deleted} orphans; {stats.bytes_freed} bytes freed"
    )


@app.command("repair")
@guarded
def repair_cmd(
    name: str | None = typer.Argument(
        None, help="A repository of the catalog (its url and key from there); or --repo."
    ),
    repo: str | None = typer.Option(
        None, "--repo", envvar="HAVEN_REPO", help="Repository location, when no NAME is given."
    ),
    password_file: Path | None = PASSWORD_FILE_OPTION,
    key_file: Path | None = KEY_FILE_OPTION,
    read_data: bool = typer.Option(
        False, "--read-data", help="Read every pack and salvage packs holding bad chunks."
    ),
    accept_rollback: bool = typer.Option(
        False,
        "--accept-rollback",
        help="The repository's record of points is older than one this host saw: accept it.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be done."),
    project: str | None = PROJECT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Rebuild indexes from pack trailers, salvage damaged packs, quarantine bad objects
    (under quarantine/), and say per point what was saved: intact, partial or lost.

    Exits 0 when every point left is intact, 6 when some data could not be saved. By
    NAME, the catalog follows: points repair could not save are marked damaged, damaged
    points it verified whole (--read-data) are committed again."""
    if name is not None:
        from haven.engine import api

        named = api.repair_repository(name, read_data=read_data, dry_run=dry_run,
                                      accept_rollback=accept_rollback, project=project)  # fmt: skip
        render_repair(named.report, as_json, {"repository": name, **named.catalog()})
        return
    if project is not None:
        raise InvalidArgument("--project", "a project's part is repaired by repository NAME")
    if not repo:
        raise InvalidArgument("NAME", "give a repository NAME from the catalog, or --repo URL")
    r = open_repo(repo, password_file, key_file)
    report = repair(r, read_data=read_data, dry_run=dry_run, accept_rollback=accept_rollback)
    render_repair(report, as_json)


def render_repair(report: RepairReport, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    """Print a repair report; exit 6 if anything could not be saved."""
    counts = {s.value: report.count(s) for s in Salvage}
    if as_json:
        body = {k: getattr(report, k) for k in report.__slots__}
        print_json({"counts": counts, **body, **(extra or {})})
    else:
        for change in (extra or {}).get("catalog_changes", []):
            console.print(f"catalog: {change}", highlight=False, markup=False)
        verb = "would " if report.dry_run else ""
        for line in report.actions:
            console.print(f"{verb}{line}", highlight=False, markup=False)
        for line in report.unsaved:
            err_console.print(f"[red]not saved:[/red] {escape(line)}", highlight=False)
        console.print(
            f"points: {counts['intact']} intact, {counts['partial']} partial, "
            f"{counts['lost']} lost; {len(report.quarantined)} object(s) quarantined"
        )
        for p in report.points:
            if p.salvage is not Salvage.INTACT:
                what = f"{p.chunks_lost} of {p.chunks_total} chunks lost" if p.chunks_total else ""
                console.print(
                    f"  {p.salvage.value}: {p.manifest_id} {p.volume}@{p.point_id} {what}",
                    highlight=False,
                    markup=False,
                )
    if report.unsaved or counts["partial"] or counts["lost"]:
        raise typer.Exit(int(ExitCode.INTEGRITY))


@app.command("stats")
@guarded
def stats_cmd(
    repo: str = REPO_OPTION,
    password_file: Path | None = PASSWORD_FILE_OPTION,
    key_file: Path | None = KEY_FILE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Sizes, counts and volumes of a repository."""
    r = open_repo(repo, password_file, key_file)
    s = repo_stats(r)
    if as_json:
        print_json(s)
        return
    console.print(
        f"repository {s.repo_id} at {s.location} (format v{s.format_version})", markup=False
    )
    console.print(
        f"  {s.manifests} points, {len(s.volumes)} volumes, {s.logical_bytes} logical bytes"
    )
    console.print(
        f"  {s.packs} packs, {s.pack_bytes} bytes stored, {s.unique_chunks} unique chunks"
    )
    for v in s.volumes:
        console.print(
            f"  volume {v.volume}: {v.points} points, size {v.size}, latest {v.latest}",
            markup=False,
        )


@app.command("unlock")
@guarded
def unlock_cmd(
    repo: str = REPO_OPTION,
    password_file: Path | None = PASSWORD_FILE_OPTION,
    key_file: Path | None = KEY_FILE_OPTION,
    remove_all: bool = typer.Option(
        False, "--all", help="Remove live locks too (only if no Haven process uses the repo)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove stale locks (left by crashed processes); with --all, every lock."""
    r = open_repo(repo, password_file, key_file)
    removed = []
    now = time.time()
    for lk in read_locks(r.backend, r.keys):
        if isinstance(lk, str):
            r.backend.delete(lk)
            removed.append(lk)
        elif remove_all or lk.is_stale(now, r.lock_policy.stale_after):
            r.backend.delete(LOCK_PREFIX + lk.lock_id)
            removed.append(f"{lk.kind.value} lock by pid {lk.pid} on {lk.host}")
    if as_json:
        print_json({"removed": removed})
        return
    console.print(f"removed {len(removed)} lock(s)")
    for line in removed:
        console.print(f"  {line}", highlight=False, markup=False)


def not_found(path: Path) -> NotFoundError:
    return NotFoundError(f"{path}: no such file or device")
