"""Volume data through images: the data path that feeds Haven's own repository.

Protected site (:func:`read_snapshot`)::

    point snapshot -> temporary volume from it -> Cinder upload-to-image -> stream the
    Glance download into a local sparse file (all-zero blocks stay holes) -> readinto()

Recovery site (:func:`write_volume`)::

    writes land in a local sparse file -> on success: upload it to Glance as an image ->
    Cinder re-image of the target volume (os-reimage, microversion 3.68) -> delete the image

Image format (:class:`ImageFormat`): ``raw`` moves the whole volume both ways (a raw image
has no holes: a 1 GiB volume is 1 GiB over the image API whatever it holds); ``qcow2``
moves only allocated clusters (Cinder converts on upload-to-image and on re-image; Haven
converts locally with qemu-img, see haven.sites.openstack.qemuimg).

Why a temporary volume rather than uploading the snapshot's volume: with Cinder's NFS
driver a volume that has snapshots is a qcow2 chain, and the known bug (issue 6,
shared/notes/openstack-lab.md) shows such volumes can hand out qcow2 bytes; a volume
created from the snapshot is a plain, flat copy of the point. The download is checked
by content, not status: exactly the volume's size in bytes and the MD5 Glance recorded.

Why re-image: it writes the image into the *existing* volume, so the caller's VolumeInfo
(id, name, size) stays valid. Cinder's NFS driver writes the image into the volume's base
file, which would be wrong for a volume with snapshots (its active layer is an overlay):
such volumes are refused before anything is written.

Contracts:
- Every temporary volume, image and file is removed on exit, on success and on error;
  temporary cloud objects are named after the caller's name (a point or volume name), so
  a sweep by the caller's prefix finds leftovers of an interrupted process.
- Memory is bounded: downloads and uploads stream in ``STREAM_BLOCK`` pieces.
- Errors are OpenStackSiteError/OpenStackTimeout (cloud calls) or SiteIOError (the stream
  broke); they name the object and the step, never a token or password.
- Figures (:class:`TransferFigures`) count bytes moved over the image API per disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from openstack import exceptions as osexc

from haven.domain.extents import Extent
from haven.sites.errors import SiteConflict, SiteIOError, UnsupportedCapability
from haven.sites.openstack import qemuimg
from haven.sites.openstack.connection import wait_status
from haven.sites.openstack.errors import OpenStackSiteError
from haven.sites.openstack.snapshots import max_microversion
from haven.sites.openstack.sparse import SparseFile

GiB = 1024**3
STREAM_BLOCK = 1024 * 1024
REIMAGE_MICROVERSION = (3, 68)
# Volume metadata Haven sets on every volume it snapshots. Cinder's NFS-like drivers keep a
# volume that has had snapshots as a qcow2 chain whose active layer is not the base file,
# even after the snapshots are gone, while re-image writes the base file: the volume would
# read back wrong. Such volumes are never re-imaged; restores go into new volumes.
SNAPSHOTTED = "haven:snapshotted"
REIMAGE_STATES = frozenset({"available", "reserved"})  # what Cinder's re-image accepts
IMAGE_ERRORS = frozenset({"killed", "deleted", "pending_delete"})
DEFAULT_TIMEOUT = 900.0


class ImageFormat(StrEnum):
    RAW = "raw"  # no local tooling; the whole volume crosses the image API
    QCOW2 = "qcow2"  # only allocated data crosses; needs qemu-img on the Haven host


@dataclass(slots=True)
class TransferFigures:
    """What one disk's transfer moved and how long each step took (seconds)."""

    size: int = 0
    image_bytes_downloaded: int = 0  # Glance -> Haven (protected site)
    image_bytes_uploaded: int = 0  # Haven -> Glance (recovery site)
    bytes_read: int = 0  # served to the data mover through readinto()
    bytes_written: int = 0  # received from the data mover through write()
    prepare_s: float = 0.0  # snapshot -> volume -> image (Cinder work)
    download_s: float = 0.0
    upload_s: float = 0.0
    reimage_s: float = 0.0
    cleanup_s: float = 0.0


class ImageReader:
    """A point's disk, downloaded into a local sparse file: a PointDiskReader and the data
    mover's BlockSource + AllocationMap. Valid only inside :func:`read_snapshot`."""

    def __init__(self, sparse: SparseFile, figures: TransferFigures) -> None:
        self._file = sparse
        self.figures = figures
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._file.size

    def readinto(self, offset: int, buf: bytearray | memoryview) -> int:
        n = self._file.pread(offset, buf)
        with self._lock:
            self.figures.bytes_read += n
        return n

    def allocated(self) -> list[Extent]:
        return self._file.allocated()

    def changed_extents(self) -> list[Extent] | None:
        """None: the image API knows no changed blocks; backup dedups unchanged chunks."""
        return None

    @property
    def bytes_read(self) -> int:
        return self.figures.bytes_read

    @property
    def image_bytes_downloaded(self) -> int:
        return self.figures.image_bytes_downloaded


class ImageWriter:
    """A volume's new content, collected in a local sparse file: a VolumeWriter.

    ``fresh`` is True: the upload replaces the whole volume, so what is not written reads
    as zeros. Reading before anything was written (the engine backs up a stopped server's
    volume through its writer) first loads the volume's current content through a
    snapshot; from then on ``fresh`` is False. The volume is re-imaged on exit only if
    something was written or zeroed. ``before_write`` runs once, before the first write or
    zero takes effect (it checks that the volume may be re-imaged; reading needs no such
    check, so a stopped server's attached volume can be read through its writer).
    """

    def __init__(
        self,
        sparse: SparseFile,
        figures: TransferFigures,
        load: Callable[[SparseFile], None],
        before_write: Callable[[], None] = lambda: None,
    ) -> None:
        self._file = sparse
        self.figures = figures
        self._load = load
        self._before_write = before_write
        self._lock = threading.Lock()
        self._gate = threading.Lock()
        self._write_checked = False
        self.loaded = False
        self.dirty = False

    def _check_write(self) -> None:
        if self._write_checked:
            return
        with self._gate:
            if not self._write_checked:
                self._before_write()
                self._write_checked = True

    @property
    def size(self) -> int:
        return self._file.size

    @property
    def fresh(self) -> bool:
        return not self.loaded

    def _ensure_loaded(self) -> None:
        with self._lock:
            if not self.loaded and not self.dirty:
                self._load(self._file)
                self.loaded = True

    def readinto(self, offset: int, buf: bytearray | memoryview) -> int:
        self._ensure_loaded()
        n = self._file.pread(offset, buf)
        with self._lock:
            self.figures.bytes_read += n
        return n

    def allocated(self) -> list[Extent]:
        self._ensure_loaded()
        return self._file.allocated()

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self._check_write()
        self._file.pwrite(offset, data)
        with self._lock:
            self.dirty = True
            self.figures.bytes_written += len(data)

    def zero(self, offset: int, length: int) -> None:
        self._check_write()
        self._file.zero(offset, length)
        with self._lock:
            self.dirty = True

    def flush(self) -> None:
        """Nothing to do: the data reaches the volume when the writer is closed."""

    @property
    def bytes_written(self) -> int:
        return self.figures.bytes_written

    @property
    def image_bytes_uploaded(self) -> int:
        return self.figures.image_bytes_uploaded


# -- protected site ---------------------------------------------------------------------------
@contextlib.contextmanager
def read_snapshot(
    conn: Any,
    snapshot_id: str,
    size_gib: int,
    name: str,
    *,
    directory: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    figures: TransferFigures | None = None,
    image_format: ImageFormat = ImageFormat.RAW,
) -> Iterator[ImageReader]:
    """Yield a reader over the snapshot's content (see the module contract).

    ``name`` prefixes the temporary volume and image (``<name>-xfer``)."""
    fig = figures if figures is not None else TransferFigures()
    fig.size = size_gib * GiB
    sparse = SparseFile(fig.size, directory)
    try:
        download_snapshot(conn, snapshot_id, size_gib, name, sparse, fig, timeout, image_format)
        yield ImageReader(sparse, fig)
    finally:
        sparse.close()


def download_snapshot(
    conn: Any,
    snapshot_id: str,
    size_gib: int,
    name: str,
    sparse: SparseFile,
    fig: TransferFigures,
    timeout: float = DEFAULT_TIMEOUT,
    image_format: ImageFormat = ImageFormat.RAW,
) -> None:
    """Fill ``sparse`` (all zeros) with the snapshot's content through a temporary volume
    and image; both are deleted before this returns, also on error."""
    bs = conn.block_storage
    tmp_name = f"{name}-xfer"
    volume_id: str | None = None
    image_id: str | None = None
    t0 = time.monotonic()
    try:
        vol = _sdk(
            f"create volume {tmp_name} from snapshot {snapshot_id}",
            lambda: bs.create_volume(name=tmp_name, size=size_gib, snapshot_id=snapshot_id),
        )
        volume_id = vol.id
        try:
            wait_status(
                f"volume {tmp_name}", lambda: bs.get_volume(vol.id), {"available"}, timeout=timeout
            )
        except OpenStackSiteError as exc:
            raise OpenStackSiteError(
                f"{exc}: Cinder could not copy snapshot {snapshot_id} into a volume. On NFS-like "
                "drivers this happens while an older snapshot of the same volume exists (the "
                "point's snapshot is then a qcow2 layer with a backing file, which Cinder's "
                "image safety check refuses): release earlier points before taking the next"
            ) from exc
        image_id = upload_volume_to_image(conn, vol.id, tmp_name, image_format)
        image = wait_image_active(conn, image_id, tmp_name, timeout)
        wait_status(
            f"volume {tmp_name} after upload",
            lambda: bs.get_volume(vol.id),
            {"available"},
            timeout=timeout,
        )
        fig.prepare_s += time.monotonic() - t0
        t1 = time.monotonic()
        if image_format is ImageFormat.RAW:
            fig.image_bytes_downloaded += download_image(conn, image, sparse, tmp_name)
        else:
            local_dir = os.path.dirname(sparse.path)
            with SparseFile(int(image.size or 0), local_dir, "haven-xfer-qcow2-") as q:
                fig.image_bytes_downloaded += download_image(conn, image, q, tmp_name)
                qemuimg.qcow2_to_raw(q.path, sparse.path, sparse.size, f"image {tmp_name}")
        fig.download_s += time.monotonic() - t1
    except BaseException:
        _cleanup_quietly(conn, image_id=image_id, volume_id=volume_id, timeout=timeout)
        raise
    t2 = time.monotonic()
    _cleanup(conn, image_id=image_id, volume_id=volume_id, timeout=timeout)
    fig.cleanup_s += time.monotonic() - t2


def upload_volume_to_image(
    conn: Any, volume_id: str, image_name: str, image_format: ImageFormat = ImageFormat.RAW
) -> str:
    """Cinder's upload-to-image (bare, private); returns the new image's id."""
    body = {
        "os-volume_upload_image": {
            "image_name": image_name,
            "force": False,
            "disk_format": str(image_format),
            "container_format": "bare",
        }
    }
    resp = _sdk(
        f"upload volume {volume_id} to image",
        lambda: _checked(conn.block_storage.post(f"/volumes/{volume_id}/action", json=body)),
    )
    return str(resp.json()["os-volume_upload_image"]["image_id"])


def wait_image_active(conn: Any, image_id: str, what: str, timeout: float) -> Any:
    return wait_status(
        f"image {what} ({image_id})",
        lambda: conn.image.get_image(image_id),
        {"active"},
        error=IMAGE_ERRORS,
        timeout=timeout,
    )


def download_image(conn: Any, image: Any, sparse: SparseFile, what: str) -> int:
    """Stream the (active) image into ``sparse``; return the bytes received. The content
    must be exactly ``sparse.size`` bytes with the MD5 Glance recorded, else SiteIOError
    (for a raw image this also catches qcow2 bytes handed out as a volume's content)."""
    image_id = image.id
    if image.size is not None and int(image.size) != sparse.size:
        raise SiteIOError(
            f"image {what} ({image_id}) holds {image.size} bytes, expected {sparse.size}: "
            "not a copy of the volume in the requested format; nothing was read"
        )
    md5 = hashlib.md5(usedforsecurity=False)
    resp = _sdk(
        f"download image {what}",
        lambda: _checked(conn.image.get(f"/images/{image_id}/file", stream=True)),
    )

    def chunks() -> Iterator[bytes]:
        for chunk in resp.iter_content(STREAM_BLOCK):
            md5.update(chunk)
            yield chunk

    try:
        got = sparse.fill_from(chunks())
    except (OSError, ValueError) as exc:  # local disk, or a stream longer than the volume
        raise SiteIOError(f"download of image {what} ({image_id}): {exc}") from exc
    except Exception as exc:  # the HTTP stream broke (requests/urllib3 errors)
        raise SiteIOError(
            f"download of image {what} ({image_id}) broke: {type(exc).__name__}"
        ) from exc
    finally:
        resp.close()
    if got != sparse.size:
        raise SiteIOError(
            f"download of image {what} ({image_id}) gave {got} bytes, expected {sparse.size}"
        )
    if image.checksum and md5.hexdigest() != image.checksum:
        raise SiteIOError(f"download of image {what} ({image_id}) does not match its MD5")
    return got


# -- recovery site ----------------------------------------------------------------------------
@contextlib.contextmanager
def write_volume(
    conn: Any,
    volume_id: str,
    size: int,
    name: str,
    *,
    directory: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    figures: TransferFigures | None = None,
    image_format: ImageFormat = ImageFormat.RAW,
    make_writable: Callable[[], None] | None = None,
) -> Iterator[ImageWriter]:
    """Yield a writer for the volume (see the module contract). On a clean exit with
    writes, the volume's whole content is replaced; on an exception it is left as it was.
    ``make_writable`` runs before the first write (the driver releases a stopped server's
    hold on the volume there: Cinder re-images only available or reserved volumes)."""
    fig = figures if figures is not None else TransferFigures()
    fig.size = size
    check_reimage_supported(conn, name)
    sparse = SparseFile(size, directory)

    def load(into: SparseFile) -> None:
        load_volume(conn, volume_id, name, into, fig, timeout, image_format)

    def before_write() -> None:
        if make_writable is not None:
            make_writable()
        check_volume_writable(conn, volume_id, name)

    try:
        writer = ImageWriter(sparse, fig, load, before_write)
        yield writer
        if writer.dirty:
            upload_and_reimage(conn, volume_id, name, sparse, fig, timeout, image_format)
    finally:
        sparse.close()


def check_reimage_supported(conn: Any, name: str) -> None:
    """Refuse at once where Cinder has no re-image (checked when the writer opens)."""
    if max_microversion(conn) < REIMAGE_MICROVERSION:
        raise UnsupportedCapability(
            f"volume {name}: writing through images needs Cinder's re-image "
            "(block-storage API microversion 3.68, Zed or later)"
        )


def check_volume_writable(conn: Any, volume_id: str, name: str) -> None:
    """Refuse before the first write when the re-image would fail or be unsafe."""
    bs = conn.block_storage
    vol = _sdk(f"get volume {name}", lambda: bs.get_volume(volume_id))
    if vol.status not in REIMAGE_STATES:
        raise SiteConflict(
            f"volume {name} ({volume_id}) is {vol.status}: detach it (status available), "
            "or stop and shelve its server (status reserved), before restoring into it"
        )
    if (vol.metadata or {}).get(SNAPSHOTTED):
        raise SiteConflict(
            f"volume {name} ({volume_id}) has had snapshots (Haven protected it): on "
            "NFS-like backends re-imaging it in place would be shadowed by its qcow2 layers; "
            "restore into a new volume"
        )
    if any(s.volume_id == volume_id for s in bs.snapshots(volume_id=volume_id)):
        raise SiteConflict(
            f"volume {name} ({volume_id}) has snapshots: re-imaging would write under them; "
            "delete its snapshots or restore into a new volume"
        )


def load_volume(
    conn: Any,
    volume_id: str,
    name: str,
    sparse: SparseFile,
    fig: TransferFigures,
    timeout: float,
    image_format: ImageFormat = ImageFormat.RAW,
) -> None:
    """The volume's current content into ``sparse``, through a temporary snapshot."""
    bs = conn.block_storage
    vol = _sdk(f"get volume {name}", lambda: bs.get_volume(volume_id))
    snap = _sdk(
        f"snapshot volume {name}",
        lambda: bs.create_snapshot(volume_id=volume_id, force=True, name=f"{name}-xfer"),
    )
    try:
        wait_status(
            f"snapshot {name}-xfer",
            lambda: bs.get_snapshot(snap.id),
            {"available"},
            timeout=timeout,
        )
        download_snapshot(conn, snap.id, vol.size, name, sparse, fig, timeout, image_format)
    finally:
        with contextlib.suppress(osexc.SDKException):
            bs.delete_snapshot(snap.id, ignore_missing=True)
        _wait_gone(lambda: bs.find_snapshot(snap.id), timeout)


def upload_and_reimage(
    conn: Any,
    volume_id: str,
    name: str,
    sparse: SparseFile,
    fig: TransferFigures,
    timeout: float,
    image_format: ImageFormat = ImageFormat.RAW,
) -> None:
    image_name = f"{name}-xfer"
    image_id: str | None = None
    qcow2_path: str | None = None
    try:
        t0 = time.monotonic()
        image_id = create_image(conn, image_name, image_format)
        if image_format is ImageFormat.RAW:
            path, length = sparse.path, sparse.size
        else:
            fd, qcow2_path = tempfile.mkstemp(
                prefix="haven-xfer-", suffix=".qcow2", dir=os.path.dirname(sparse.path)
            )
            os.close(fd)
            qemuimg.raw_to_qcow2(sparse.path, qcow2_path, f"image {image_name}")
            path, length = qcow2_path, os.path.getsize(qcow2_path)
        fig.image_bytes_uploaded += upload_image_data(conn, image_id, path, length, image_name)
        wait_image_active(conn, image_id, image_name, timeout)
        fig.upload_s += time.monotonic() - t0
        t1 = time.monotonic()
        reimage(conn, volume_id, image_id, name, timeout)
        fig.reimage_s += time.monotonic() - t1
    except BaseException:
        _cleanup_quietly(conn, image_id=image_id, volume_id=None, timeout=timeout)
        raise
    finally:
        if qcow2_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(qcow2_path)
    t2 = time.monotonic()
    _cleanup(conn, image_id=image_id, volume_id=None, timeout=timeout)
    fig.cleanup_s += time.monotonic() - t2


def create_image(conn: Any, image_name: str, image_format: ImageFormat) -> str:
    body = {
        "name": image_name,
        "disk_format": str(image_format),
        "container_format": "bare",
        "visibility": "private",
    }
    resp = _sdk(
        f"create image {image_name}", lambda: _checked(conn.image.post("/images", json=body))
    )
    return str(resp.json()["id"])


def upload_image_data(conn: Any, image_id: str, path: str, length: int, what: str) -> int:
    """Stream the file at ``path`` (``length`` bytes; holes read as zeros: raw images are
    not sparse) to Glance; return the bytes sent after checking Glance's MD5 of what it
    stored."""
    md5 = hashlib.md5(usedforsecurity=False)
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        with open(path, "rb") as f:
            while block := f.read(STREAM_BLOCK):
                md5.update(block)
                sent += len(block)
                yield block

    _sdk(
        f"upload image {what}",
        lambda: _checked(
            conn.image.put(
                f"/images/{image_id}/file",
                data=body(),
                headers={"Content-Type": "application/octet-stream"},
            )
        ),
    )
    image = wait_image_active(conn, image_id, what, DEFAULT_TIMEOUT)
    if sent != length or (image.checksum and image.checksum != md5.hexdigest()):
        raise SiteIOError(f"upload of image {what} ({image_id}) arrived incomplete or altered")
    return sent


def reimage(conn: Any, volume_id: str, image_id: str, name: str, timeout: float) -> None:
    """Re-image an available volume, or a reserved one (attached to a shelved-offloaded
    server: Cinder's own flow for rebuilding volume-backed servers); the volume returns to
    the status it had."""
    bs = conn.block_storage
    before = str(_sdk(f"get volume {name}", lambda: bs.get_volume(volume_id)).status)
    reserved = before == "reserved"
    body = {"os-reimage": {"image_id": image_id, "reimage_reserved": reserved}}
    mv = f"{REIMAGE_MICROVERSION[0]}.{REIMAGE_MICROVERSION[1]}"
    _sdk(
        f"re-image volume {name}",
        lambda: _checked(bs.post(f"/volumes/{volume_id}/action", json=body, microversion=mv)),
    )
    try:
        # the API moved the volume to "downloading" before answering: wait for it to return
        wait_status(
            f"re-image of volume {name}",
            lambda: bs.get_volume(volume_id),
            {before},
            timeout=timeout,
        )
    except OpenStackSiteError as exc:
        raise OpenStackSiteError(
            f"{exc}; Cinder left volume {name} ({volume_id}) in error: its content is "
            "undefined, restore into it again or delete it"
        ) from exc


# -- helpers ----------------------------------------------------------------------------------
def _checked(resp: Any) -> Any:
    osexc.raise_from_response(resp)
    return resp


def _sdk(what: str, call: Callable[[], Any]) -> Any:
    """Run an SDK call; its failure becomes OpenStackSiteError naming ``what``. SDK
    messages carry the HTTP status and the service's reason, never credentials."""
    try:
        return call()
    except osexc.SDKException as exc:
        status = getattr(exc, "status_code", None)
        detail = getattr(exc, "details", None) or type(exc).__name__
        raise OpenStackSiteError(
            f"{what}: HTTP {status} {detail}" if status else f"{what}: {detail}"
        ) from exc


def _cleanup_quietly(
    conn: Any, *, image_id: str | None, volume_id: str | None, timeout: float
) -> None:
    """Cleanup on an error path: the original error matters more than a cleanup failure
    (whose objects carry the caller's name, so a sweep by that name finds them)."""
    with contextlib.suppress(Exception):
        _cleanup(conn, image_id=image_id, volume_id=volume_id, timeout=timeout)


def _cleanup(conn: Any, *, image_id: str | None, volume_id: str | None, timeout: float) -> None:
    """Delete the temporary image and volume; a failure is raised after both were tried."""
    problems: list[str] = []
    if image_id is not None:
        try:
            conn.image.delete_image(image_id, ignore_missing=True)
        except osexc.SDKException as exc:
            problems.append(f"image {image_id}: {type(exc).__name__}")
    if volume_id is not None:
        bs = conn.block_storage
        try:
            # a volume still uploading cannot be deleted: wait until it settles first
            wait_status(
                f"volume {volume_id} before delete",
                lambda: bs.get_volume(volume_id),
                {"available", "error"},
                error=frozenset(),
                timeout=timeout,
            )
            bs.delete_volume(volume_id, ignore_missing=True)
            _wait_gone(lambda: bs.find_volume(volume_id), timeout)
        except (osexc.SDKException, OpenStackSiteError) as exc:
            problems.append(f"volume {volume_id}: {exc}")
    if problems:
        raise OpenStackSiteError("temporary transfer objects left behind: " + "; ".join(problems))


def _wait_gone(find: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.3
    while find() is not None:
        if time.monotonic() > deadline:
            raise OpenStackSiteError("deletion did not finish in time")
        time.sleep(delay)
        delay = min(delay * 1.5, 3.0)
