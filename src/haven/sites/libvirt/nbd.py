"""A minimal NBD client (fixed newstyle, structured replies) over a unix socket.

Why our own: there is no /dev/nbd on the lab machines (so no `qemu-nbd -c`), and Debian's
libnbd binding only serves Debian's python3. We need four things from QEMU's NBD server:
READ, WRITE/FLUSH (restore into a volume through `qemu-nbd`), and BLOCK_STATUS for one meta
context (a libvirt pull backup exports its dirty bitmap as ``qemu:dirty-bitmap:backup-<dev>``;
``base:allocation`` tells holes apart). Thread-safe by serialising requests on a lock (the
data mover may call ``readinto`` from several threads; under TCG the guest, not NBD, is the
bottleneck).
Protocol reference: https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass

from haven.sites.errors import SiteIOError

_NBDMAGIC = 0x4E42444D41474943
_IHAVEOPT = 0x49484156454F5054
_REPLY_MAGIC = 0x3E889045565A9
_REQ_MAGIC = 0x25609513
_SIMPLE_REPLY = 0x67446698
_STRUCT_REPLY = 0x668E33EF

_OPT_GO, _OPT_STRUCTURED, _OPT_SET_META = 7, 8, 10
_REP_ACK, _REP_INFO, _REP_META = 1, 3, 4
_CMD_READ, _CMD_WRITE, _CMD_DISC, _CMD_FLUSH, _CMD_ZEROES, _CMD_BLOCK_STATUS = 0, 1, 2, 3, 6, 7
_CHUNK_NONE, _CHUNK_DATA, _CHUNK_HOLE, _CHUNK_BLOCK_STATUS = 0, 1, 2, 5
_FLAG_DONE = 1
_MAX_REQUEST = 32 * 1024 * 1024  # QEMU refuses requests above 32 MiB


@dataclass(frozen=True, slots=True)
class StatusExtent:
    offset: int
    length: int
    flags: int


class NbdClient:
    def __init__(self, socket_path: str, export: str, meta_context: str | None = None) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._handle = 0
        self._lock = threading.Lock()
        self._meta_id: int | None = None
        try:
            self._sock.connect(socket_path)
            self.size = self._handshake(export, meta_context)
        except (OSError, struct.error) as exc:
            self._sock.close()
            raise SiteIOError(f"NBD connect to {export!r}: {exc}") from exc

    # -- handshake -------------------------------------------------------------------------
    def _recv(self, n: int) -> bytes:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            r = self._sock.recv_into(view[got:])
            if r == 0:
                raise SiteIOError("NBD server closed the connection")
            got += r
        return bytes(buf)

    def _option(self, opt: int, data: bytes) -> None:
        self._sock.sendall(struct.pack(">QII", _IHAVEOPT, opt, len(data)) + data)

    def _option_reply(self) -> tuple[int, bytes]:
        magic, _opt, rtype, length = struct.unpack(">QIII", self._recv(20))
        if magic != _REPLY_MAGIC:
            raise SiteIOError("NBD: bad option reply magic")
        data = self._recv(length)
        if rtype & 0x80000000:
            raise SiteIOError(f"NBD option refused ({rtype:#x}): {data!r}")
        return rtype, data

    def _handshake(self, export: str, meta_context: str | None) -> int:
        magic, opt_magic, _flags = struct.unpack(">QQH", self._recv(18))
        if magic != _NBDMAGIC or opt_magic != _IHAVEOPT:
            raise SiteIOError("NBD: not a fixed-newstyle server")
        self._sock.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
        self._option(_OPT_STRUCTURED, b"")
        self._option_reply()
        name = export.encode()
        if meta_context:
            q = meta_context.encode()
            self._option(
                _OPT_SET_META,
                struct.pack(">I", len(name)) + name + struct.pack(">II", 1, len(q)) + q,
            )
            while True:
                rtype, data = self._option_reply()
                if rtype == _REP_ACK:
                    break
                if rtype == _REP_META:
                    self._meta_id = struct.unpack(">I", data[:4])[0]
            if self._meta_id is None:
                raise SiteIOError(f"NBD: export {export!r} has no context {meta_context!r}")
        self._option(_OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
        size = -1
        while True:
            rtype, data = self._option_reply()
            if rtype == _REP_ACK:
                break
            if rtype == _REP_INFO and struct.unpack(">H", data[:2])[0] == 0:
                size = struct.unpack(">Q", data[2:10])[0]
        if size < 0:
            raise SiteIOError("NBD: server sent no export size")
        return size

    # -- transmission ----------------------------------------------------------------------
    def _request(self, cmd: int, offset: int, length: int, payload: bytes = b"") -> int:
        self._handle += 1
        hdr = struct.pack(">IHHQQI", _REQ_MAGIC, 0, cmd, self._handle, offset, length)
        self._sock.sendall(hdr + payload if len(payload) < 65536 else hdr)
        if len(payload) >= 65536:
            self._sock.sendall(payload)
        return self._handle

    def _replies(self, handle: int, on_chunk: object) -> None:
        """Consume reply chunks of ``handle`` until DONE; call on_chunk(type, payload)."""
        while True:
            magic = struct.unpack(">I", self._recv(4))[0]
            if magic == _SIMPLE_REPLY:
                err, h = struct.unpack(">IQ", self._recv(12))
                if err:
                    raise SiteIOError(f"NBD request failed: errno {err}")
                on_chunk(-1, b"")  # type: ignore[operator]
                return
            if magic != _STRUCT_REPLY:
                raise SiteIOError(f"NBD: bad reply magic {magic:#x}")
            flags, ctype, h, length = struct.unpack(">HHQI", self._recv(16))
            payload = self._recv(length)
            if ctype & 0x8000:
                err = struct.unpack(">I", payload[:4])[0]
                raise SiteIOError(f"NBD request failed: errno {err}")
            if h != handle:
                raise SiteIOError("NBD: reply for an unknown request")
            if ctype != _CHUNK_NONE:
                on_chunk(ctype, payload)  # type: ignore[operator]
            if flags & _FLAG_DONE:
                return

    def readinto(self, offset: int, buf: memoryview | bytearray) -> int:
        """Fill ``buf`` from ``offset`` (short only at the end of the export)."""
        with self._lock:
            return self._readinto(offset, buf)

    def _readinto(self, offset: int, buf: memoryview | bytearray) -> int:
        view = memoryview(buf).cast("B")
        n = max(0, min(len(view), self.size - offset))
        pos = 0
        while pos < n:
            step = min(n - pos, _MAX_REQUEST)
            base = offset + pos
            target = view[pos : pos + step]
            # A simple reply carries the data after the header; structured chunks say where.
            simple = {"hit": False}

            def chunk(
                ctype: int,
                payload: bytes,
                base: int = base,
                target: memoryview = target,
                simple: dict[str, bool] = simple,
            ) -> None:
                if ctype == -1:
                    simple["hit"] = True
                elif ctype == _CHUNK_DATA:
                    off = struct.unpack(">Q", payload[:8])[0] - base
                    target[off : off + len(payload) - 8] = payload[8:]
                elif ctype == _CHUNK_HOLE:
                    off, hl = struct.unpack(">QI", payload[:12])
                    target[off - base : off - base + hl] = bytes(hl)

            self._replies(self._request(_CMD_READ, base, step), chunk)
            if simple["hit"]:
                target[:] = self._recv(step)
            pos += step
        return n

    def pwrite(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        with self._lock:
            for pos in range(0, len(view), _MAX_REQUEST):
                part = bytes(view[pos : pos + _MAX_REQUEST])
                self._replies(self._request(_CMD_WRITE, offset + pos, len(part), part), _ignore)

    def write_zeroes(self, offset: int, length: int) -> None:
        with self._lock:
            pos = 0
            while pos < length:
                step = min(length - pos, 0x7FF00000)
                self._replies(self._request(_CMD_ZEROES, offset + pos, step), _ignore)
                pos += step

    def flush(self) -> None:
        with self._lock:
            self._replies(self._request(_CMD_FLUSH, 0, 0), _ignore)

    def block_status(self, offset: int = 0, length: int | None = None) -> list[StatusExtent]:
        """Extents with the negotiated meta context's flags, covering [offset, offset+length)."""
        with self._lock:
            return self._block_status(offset, length)

    def _block_status(self, offset: int, length: int | None) -> list[StatusExtent]:
        if self._meta_id is None:
            raise SiteIOError("NBD: no meta context negotiated")
        end = self.size if length is None else min(self.size, offset + length)
        out: list[StatusExtent] = []
        pos = offset
        while pos < end:
            got: list[StatusExtent] = []

            def chunk(
                ctype: int, payload: bytes, start: int = pos, got: list[StatusExtent] = got
            ) -> None:
                if ctype != _CHUNK_BLOCK_STATUS:
                    return
                cur = start
                for i in range(4, len(payload), 8):
                    ln, fl = struct.unpack(">II", payload[i : i + 8])
                    got.append(StatusExtent(cur, ln, fl))
                    cur += ln

            req = min(end - pos, 0xFFFFF000)
            self._replies(self._request(_CMD_BLOCK_STATUS, pos, req), chunk)
            if not got:
                raise SiteIOError("NBD: empty block status reply")
            for e in got:
                ln = min(e.length, end - e.offset)
                if ln > 0:
                    out.append(StatusExtent(e.offset, ln, e.flags))
            pos = got[-1].offset + got[-1].length
        return out

    def close(self) -> None:
        try:
            self._request(_CMD_DISC, 0, 0)
        except OSError:
            pass
        finally:
            self._sock.close()

    def __enter__(self) -> NbdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ignore(ctype: int, payload: bytes) -> None:
    return None
