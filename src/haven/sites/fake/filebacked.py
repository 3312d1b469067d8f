"""A fake site whose state lives in a directory, so that it survives the process.

For engine crash tests (``kill -9`` mid-operation, then resume in a new process) and for
demos without a lab. Same contract as :class:`FakeDriver` (it is one): every public call
takes an exclusive ``flock`` on ``<dir>/lock``, reloads ``<dir>/state.pickle``, runs, and
writes the state back atomically (temp file + rename). Writers and readers hold the lock
while open. Extras over FakeDriver:

- server disks are volumes too (``disk.source`` is the volume id), so a recovery can
  write into an original server's disks (failback into the old site);
- the project roles and test bubbles of FakeDriver, persisted with the rest;
- ``set_down(True)`` makes every call raise SiteUnavailable (a destroyed site).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from haven.domain.inventory import ServerSpec, VolumeInfo
from haven.sites.errors import SiteUnavailable
from haven.sites.fake.driver import FakeDriver, FakeReader, FakeWriter

_TRANSIENT = ("_dir", "_depth", "_lockfd", "_rlock")


class FileFakeDriver(FakeDriver):
    def __init__(self, name: str, directory: Path, networks: Sequence[str] = ("app-net",)) -> None:
        self._dir = Path(directory)
        self._depth = 0  # nesting depth of the thread holding _rlock
        self._lockfd: int | None = None
        self._rlock = threading.RLock()  # threads of one process (boot waves) take turns
        self._dir.mkdir(parents=True, exist_ok=True)
        super().__init__(name, networks)
        self.down = False
        with self._locked():
            pass  # loads existing state, or writes the initial one

    # -- persistence -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Outermost call: lock, load, yield, save. Nested calls (a method calling another)
        only count depth, so the state is loaded and saved once per public call."""
        with self._rlock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with self._flocked():
                yield

    @contextlib.contextmanager
    def _flocked(self) -> Iterator[None]:
        fd = os.open(self._dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._depth = 1
        try:
            self._load()
            if self.down and not getattr(self, "_admin", False):
                raise SiteUnavailable(f"site {self.name} is down")
            yield
            self._save()
        finally:
            self._depth = 0
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _load(self) -> None:
        path = self._dir / "state.pickle"
        if path.exists():
            with path.open("rb") as fh:
                state: dict[str, Any] = pickle.load(fh)
            self.__dict__.update(state)

    def _save(self) -> None:
        state = {k: v for k, v in self.__dict__.items() if k not in _TRANSIENT}
        state.pop("_admin", None)
        tmp = self._dir / f"state.pickle.{os.getpid()}"
        with tmp.open("wb") as fh:
            # no fsync: this state must survive the death of a process (the page cache
            # keeps it), not of the machine; it is a test double, and fsync costs seconds
            pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self._dir / "state.pickle")

    # -- extras ------------------------------------------------------------------------------
    def set_down(self, down: bool) -> None:
        self._admin = True
        try:
            with self._locked():
                self.down = down
        finally:
            self._admin = False

    def add_server(self, spec: ServerSpec, running: bool = True) -> str:
        with self._locked():
            sid = super().add_server(spec, running)
            srv = self.servers[sid]
            disks = []
            for d in srv.spec.disks:
                vname = f"{spec.name}-{d.target}"
                vol = VolumeInfo(f"fake://{self.name}/{vname}", vname, d.size_bytes, "raw")
                self.volumes[vol.id] = (vol, srv.disks[d.target])
                disks.append(replace(d, source=vol.id))
            srv.spec = replace(srv.spec, disks=tuple(disks))
            return sid

    def define_server(self, spec: ServerSpec, *, name: str, network_map: dict[str, str],
                      volumes: dict[str, VolumeInfo]) -> str:  # fmt: skip
        with self._locked():
            sid = super().define_server(spec, name=name, network_map=network_map, volumes=volumes)
            srv = self.servers[sid]
            disks = tuple(replace(d, source=volumes[d.target].id) for d in srv.spec.disks)
            srv.spec = replace(srv.spec, disks=disks)
            return sid

    @contextlib.contextmanager
    def open_point_disk(self, point: Any, disk: Any) -> Iterator[FakeReader]:
        with self._locked(), super().open_point_disk(point, disk) as reader:
            yield reader

    @contextlib.contextmanager
    def open_volume_writer(self, volume: VolumeInfo) -> Iterator[FakeWriter]:
        with self._locked(), super().open_volume_writer(volume) as writer:
            yield writer


def _wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    def method(self: FileFakeDriver, *args: Any, **kwargs: Any) -> Any:
        with self._locked():
            return fn(self, *args, **kwargs)

    method.__name__ = fn.__name__
    method.__doc__ = fn.__doc__
    return method


for _name in (
    "get_server", "list_servers", "capture_server", "list_networks", "list_volumes",
    "agent_ping", "guest_exec", "freeze", "thaw", "create_point", "release_point",
    "delete_point", "create_volume", "delete_volume", "start_server", "stop_server",
    "destroy_server", "undefine_server", "wait_ready", "write_disk", "set_agent",
    "set_powers_off",
    # the project roles and their knobs (haven.sites.fake.project)
    "capture_project", "survey", "ensure", "remove", "create_network", "delete_network",
    "define_placed_server", "create_typed_volume", "attach_floating_ip", "server_addresses",
    "add_flavor", "add_keypair", "add_network", "add_router", "add_security_group",
    "add_volume_type", "add_user", "add_role", "assign", "place", "add_floating_ip",
    "volume_type",
):  # fmt: skip
    setattr(FileFakeDriver, _name, _wrap(getattr(FakeDriver, _name)))
