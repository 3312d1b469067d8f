"""``haven volume backup|restore|list``: low-level per-volume commands for scripting.

The engine normally drives backups; these commands expose the same data path
(``haven.datamover``) for one volume at a time. Options shared with ``haven repo``
(``--repo``, ``--password-file``/``HAVEN_REPO_PASSWORD``, ``--key-file``).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import typer

from haven.cli.output import JSON_OPTION, console, escape, guarded, print_json
from haven.cli.repo import (
    KEY_FILE_OPTION,
    LIMIT_OPTION,
    PASSWORD_FILE_OPTION,
    REPO_OPTION,
    not_found,
    open_repo,
    progress_bar,
)
from haven.datamover import FileSource, backup_volume, restore_volume
from haven.datamover.errors import InvalidArgument, VolumeIOError
from haven.domain.extents import Extent

app = typer.Typer(
    help="Back up, restore and list single volumes (for scripting).", no_args_is_help=True
)


MAX_EXTENTS_FILE_BYTES = 64 << 20  # millions of extents; a coalesced CBT list is far smaller


def _extent_error(message: str) -> InvalidArgument:
    return InvalidArgument("--changed", message)


def _read_extents(path: Path) -> list[Extent]:
    """JSON list of ``[offset, length]`` pairs or ``{"offset":..,"length":..}`` objects:
    whole numbers, offset >= 0, length > 0 (checked against the volume by the caller)."""
    try:
        # O_NONBLOCK: a FIFO must not block the open; it is refused below
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _extent_error(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise _extent_error("a path cannot contain a NUL character") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _extent_error(f"{path} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read(MAX_EXTENTS_FILE_BYTES + 1)
    except OSError as exc:
        raise _extent_error(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_EXTENTS_FILE_BYTES:
        raise _extent_error(f"{path} is larger than {MAX_EXTENTS_FILE_BYTES >> 20} MiB")
    try:
        items = json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested beyond reason
        raise _extent_error(f"{path} is not a JSON list of [offset, length] pairs") from None
    if not isinstance(items, list):
        raise _extent_error(f"{path} must hold a JSON list of [offset, length] pairs")
    return [_extent(i, item) for i, item in enumerate(items)]


def _extent(index: int, item: object) -> Extent:
    where = f"item {index}"
    if isinstance(item, dict) and set(item) == {"offset", "length"}:
        offset, length = item["offset"], item["length"]
    elif isinstance(item, list) and len(item) == 2:
        offset, length = item
    else:
        raise _extent_error(f"{where} is not [offset, length] or {{offset, length}}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (offset, length)):
        raise _extent_error(f"{where}: offset and length are whole numbers of bytes")
    if offset < 0:
        raise _extent_error(f"{where}: offset must be >= 0 (got {offset})")
    if length <= 0:
        raise _extent_error(f"{where}: length must be > 0 (got {length})")
    return Extent(offset, length)


def _within(extents: list[Extent], size: int) -> list[Extent]:
    for i, ext in enumerate(extents):
        if ext.end > size:
            raise _extent_error(
                f"item {i} [{ext.offset}, {ext.length}] reaches beyond the end of the volume "
                f"({size} bytes)"
            )
    return extents


@app.command("backup")
@guarded
def backup(
    source: Path = typer.Argument(..., help="Image file or block device to back up."),
    volume: str = typer.Option(..., "--volume", help="Volume name in the repository."),
    point: str | None = typer.Option(None, "--point", help="Recovery point id."),
    parent: str | None = typer.Option(
        None, "--parent", help="Parent manifest (id, VOLUME or VOLUME@POINT) for --changed."
    ),
    changed: Path | None = typer.Option(
        None, "--changed", help="JSON list of [offset, length] changed since --parent."
    ),
    repo: str = REPO_OPTION,
    password_file: Path | None = PASSWORD_FILE_OPTION,
    key_file: Path | None = KEY_FILE_OPTION,
    limit: str | None = LIMIT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Back up one volume as a new manifest (incremental with --parent/--changed)."""
    r = open_repo(repo, password_file, key_file, limit)
    extents = _read_extents(changed) if changed is not None else None
    parent_id = r.find_manifest(parent).manifest_id if parent else None
    try:
        src = FileSource(source)
    except FileNotFoundError:
        raise not_found(source) from None
    except OSError as exc:
        raise VolumeIOError.wrap(f"cannot open {source}", exc) from None
    with src:
        if extents is not None:
            _within(extents, src.size)
        with progress_bar(not as_json, f"backup {escape(volume)}") as cb:
            res = backup_volume(
                r, src, volume=volume, point_id=point, parent=parent_id, changed=extents,
                progress=cb,
            )  # fmt: skip
    m, st = res.manifest, res.stats
    out = {
        "manifest_id": m.manifest_id,
        "volume": m.volume,
        "point_id": m.point_id,
        "size": m.size,
        "checksum": m.checksum,
        "parent": m.parent,
        "stats": {k: getattr(st, k) for k in st.__slots__},
    }
    if as_json:
        print_json(out)
        return
    console.print(
        f"{m.manifest_id}: {st.bytes_read} bytes read, {st.chunks_new} new chunks, "
        f"{st.bytes_uploaded} bytes uploaded in {st.elapsed:.2f}s",
        markup=False,
    )


@app.command("restore")
@guarded
def restore(
    manifest: str = typer.Argument(..., help="Manifest id, VOLUME (latest) or VOLUME@POINT."),
    target: Path = typer.Argument(
        ...,
        help="File to create or replace (only once the restored copy is verified), "
        "or block device to write.",
    ),
    into_existing: bool = typer.Option(
        False,
        "--into-existing",
        help="Target holds an older copy: write in place only what differs "
        "(every written chunk is read back and checked).",
    ),
    repo: str = REPO_OPTION,
    password_file: Path | None = PASSWORD_FILE_OPTION,
    key_file: Path | None = KEY_FILE_OPTION,
    limit: str | None = LIMIT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Restore a volume; what was written is read back and verified against the manifest.

    A file is replaced only once its restored copy is verified; on failure it is as it was."""
    r = open_repo(repo, password_file, key_file, limit)
    m = r.find_manifest(manifest)
    if into_existing and not target.exists():
        raise not_found(target)
    with progress_bar(not as_json, f"restore {escape(m.volume)}") as cb:
        st = restore_volume(r, m, target, into_existing=into_existing, progress=cb)
    out = {
        "manifest_id": m.manifest_id,
        "target": str(target),
        "stats": {k: getattr(st, k) for k in st.__slots__},
    }
    if as_json:
        print_json(out)
        return
    console.print(
        f"restored {m.volume}@{m.point_id} to {target}: {st.chunks_written} chunks "
        f"written, {st.chunks_unchanged} unchanged, verified in {st.elapsed:.2f}s",
        markup=False,
    )


@app.command("list")
@guarded
def list_cmd(
    volume: str | None = typer.Option(None, "--volume", help="Only this volume."),
    repo: str = REPO_OPTION,
    password_file: Path | None = PASSWORD_FILE_OPTION,
    key_file: Path | None = KEY_FILE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List manifests (oldest first)."""
    r = open_repo(repo, password_file, key_file)
    rows = [
        {
            "manifest_id": m.manifest_id,
            "volume": m.volume,
            "point_id": m.point_id,
            "created": m.created,
            "size": m.size,
            "parent": m.parent,
        }
        for m in r.manifests(volume)
    ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        console.print(
            f"{row['manifest_id']}  {row['volume']}@{row['point_id']}  {row['size']} bytes",
            highlight=False,
            markup=False,
        )
