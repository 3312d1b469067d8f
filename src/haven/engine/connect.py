"""Building site drivers and repositories from their catalog definitions.

Drivers and repositories are cached per process (a libvirt connection or an unlocked
repository is costly). Secrets (repository passphrases) are read from their SecretRef at
the moment the repository is opened and are never logged or kept in errors.

OpenStack sites (``driver: openstack``) connect through openstacksdk with the site's
``cloud`` and ``region``. Fake sites (``driver: fake``): ``uri`` ``file:///dir`` gives a
file-backed fake whose state survives the process (crash tests, demos without a lab); no
``uri`` gives an in-memory fake.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from haven.catalog.db import haven_home, repository_state_dir
from haven.datamover import Repository as DataRepository
from haven.datamover import open_backend
from haven.domain.errors import NotFoundError, SecurityError, ValidationError
from haven.domain.secrets import SecretRef, SecretSource
from haven.domain.sites import (
    SCRATCH_DIR_HINT,
    KeyStoreKind,
    Repository,
    RepositoryKind,
    Site,
    SiteDriver,
)
from haven.engine.keys import KeyStore, check_project, project_url
from haven.engine.ports import Closable
from haven.observability.logging import register_secret
from haven.observability.secretfiles import SecretFileError, read_secret_file
from haven.sites.base import SiteDriver as DriverProtocol

_lock = threading.Lock()
_drivers: dict[str, Any] = {}
# one opened repository per (name, bandwidth cap): groups whose policies cap replication
# differently share a repository but not a token bucket; groups of one policy share both
# (kept with the definition it was opened from: a definition changed by apply since, e.g.
# under a long-running serve, is opened again; the old opening is left to the operations
# still using it)
# Per project (a group's ``project``): the project's own part of the repository, opened
# with the project's key (engine/keys.py); the key is read again at every use so that a
# key revoked since is refused, and the opening is kept only while the key is the same.
_repos: dict[tuple[str, int | None], tuple[Repository, DataRepository]] = {}
_project_repos: dict[tuple[str, int | None, str], tuple[Repository, bytes, DataRepository]] = {}
# one key store per repository definition: a Barbican store keeps its Keystone session
# (the keys themselves are read at every use)
_stores: dict[tuple[str, Path], tuple[Repository, KeyStore]] = {}


def forget_all() -> None:
    with _lock:
        for drv in _drivers.values():
            if isinstance(drv, Closable):
                drv.close()
        _drivers.clear()
        for _definition, repo in _repos.values():
            repo.close()
        _repos.clear()
        for _definition, _key, repo in _project_repos.values():
            repo.close()
        _project_repos.clear()
        _stores.clear()


def reset_site(site: str) -> None:
    """Forget this process's driver for ``site`` (its daemon restarted: reconnect on use)."""
    with _lock:
        drv = _drivers.pop(site, None)
    if isinstance(drv, Closable):
        with contextlib.suppress(Exception):
            drv.close()


def driver_for(site: Site) -> DriverProtocol:
    with _lock:
        if site.name not in _drivers:
            _drivers[site.name] = _build(site)
        drv: DriverProtocol = _drivers[site.name]
        return drv


def _build(site: Site) -> Any:
    if site.driver is SiteDriver.FAKE:
        if site.uri and site.uri.startswith("file://"):
            from haven.sites.fake.filebacked import FileFakeDriver

            return FileFakeDriver(site.name, Path(site.uri[len("file://") :]))
        from haven.sites.fake import FakeDriver

        return FakeDriver(site.name)
    if site.driver is SiteDriver.LIBVIRT:
        if not site.uri:
            raise ValidationError(f"sites.{site.name}.uri", "a libvirt site needs a uri")
        if not site.scratch_dir:  # a catalog written before the field existed
            raise ValidationError(f"sites.{site.name}.scratch_dir", SCRATCH_DIR_HINT)
        from haven.sites.libvirt.driver import LibvirtDriver, LibvirtSiteConfig

        return LibvirtDriver(
            LibvirtSiteConfig(name=site.name, uri=site.uri, scratch_dir=site.scratch_dir)
        )
    if site.driver is SiteDriver.OPENSTACK:
        from haven.sites.openstack.driver import OpenStackDriver

        if not site.cloud or not site.region:
            raise ValidationError(
                f"sites.{site.name}.cloud",
                "an openstack site needs 'cloud' (a clouds.yaml entry) and 'region'",
            )
        # clouds.yaml is found the way every OpenStack client finds it
        # (OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack, /etc/openstack);
        # the catalog holds only the cloud and region names, never credentials.
        # compute_hosts: how Haven reaches each compute host's libvirt (guest freeze and
        # agent checks); their URIs carry no password (validation refuses one).
        return OpenStackDriver(site.name, site.cloud, site.region,
                               compute_hosts=site.compute_hosts)  # fmt: skip
    raise ValidationError(
        f"sites.{site.name}.driver", f"driver {site.driver.value!r} is not supported yet"
    )


def read_secret(ref: SecretRef) -> str:
    """The secret's value, read now. Errors name where it was looked for, never a value."""
    if ref.source is SecretSource.ENV:
        value = os.environ.get(ref.name)
        if value is None:
            raise SecurityError(f"secret {ref} is not set")
    else:
        try:
            value = read_secret_file(ref.name).rstrip("\n")
        except SecretFileError as exc:
            raise SecurityError(f"secret {ref} cannot be used: it {exc.reason}") from None
    register_secret(value)  # from now on, log lines show *** in its place
    return value


def key_store(repo: Repository) -> KeyStore:
    """The key store of the projects' data keys in ``repo`` (its ``key_store`` field),
    kept for this process while the definition stays the same."""
    where = haven_home() / "keys"
    with _lock:
        cached = _stores.get((repo.name, where))
        if cached is not None and cached[0] == repo:
            return cached[1]
    store = _build_store(repo, where)
    with _lock:
        _stores[(repo.name, where)] = (repo, store)
    return store


def _build_store(repo: Repository, where: Path) -> KeyStore:
    if repo.key_store is KeyStoreKind.BARBICAN:
        if not repo.key_cloud:
            raise ValidationError(
                f"repositories.{repo.name}.key_cloud",
                "key_store barbican needs key_cloud: the clouds.yaml entry of Haven's service user",
            )
        from haven.keystores.barbican import BarbicanKeyStore

        return BarbicanKeyStore(
            repo.key_cloud, where / "barbican", f"repositories.{repo.name}.key_cloud"
        )
    from haven.keystores.local import LocalKeyStore

    return LocalKeyStore(where / "local")


def project_repository(
    repo: Repository, project: str, limit: int | None = None, *, create: bool = True
) -> DataRepository:
    """The project's part of ``repo`` (``<url>/projects/<project>``), opened with the
    project's key read now from the repository's key store (KeyRevoked / KeyUnavailable:
    exit 7, nothing opened, nothing written). On first use (``create``) it is initialised
    with that key; a key that does not open it (another project's, or a replaced one):
    WrongKey, exit 7. Cached like ``repository_for`` while the key stays the same."""
    key = key_store(repo).project_key(project)  # every use: a revoked key is refused now
    cache_key = (repo.name, limit, project)
    with _lock:
        cached = _project_repos.get(cache_key)
        if cached is not None and cached[0] == repo and cached[1] == key:
            return cached[2]
        opened = _open_part(repo, project, key, create=create, limit=limit)
        _check_chunk_size(repo, opened)
        _project_repos[cache_key] = (repo, key, opened)
        return opened


def open_project_repository(repo: Repository, project: str) -> DataRepository:
    """The project's part of ``repo`` opened now, not cached and never created (check and
    repair; the caller closes it). As ``project_repository`` for keys and errors."""
    key = key_store(repo).project_key(project)
    return _open_part(repo, project, key, create=False, limit=None)


def _open_part(
    repo: Repository, project: str, key: bytes, *, create: bool, limit: int | None
) -> DataRepository:
    check_project(project, "project")
    part = replace(repo, url=project_url(repo.url, project), password=None, key_file=None)
    return _open(part, password=None, master_key=key, create=create, limit=limit)


def repository_for(repo: Repository, limit: int | None = None) -> DataRepository:
    """Open (and on first use initialise) the repository; cached for this process. A
    repository created with another chunk size than the definition's is refused (exit 2).

    ``limit`` (bytes/s, a policy's ``bandwidth_limit``) caps every byte this opening puts
    to or gets from the backend (the data mover's token-bucket wrapper): protect passes
    its group's policy limit, recovery passes none (RTO first)."""
    key = (repo.name, limit)
    with _lock:
        cached = _repos.get(key)
        if cached is not None and cached[0] == repo:
            return cached[1]
        opened = open_repository(repo, create=True, limit=limit)
        _check_chunk_size(repo, opened)
        _repos[key] = (repo, opened)
        return opened


def _check_chunk_size(repo: Repository, opened: DataRepository) -> None:
    if opened.config.chunk_size != repo.chunk_size:  # fixed at creation: never ignored
        opened.close()
        raise ValidationError(
            f"repositories.{repo.name}.chunk_size",
            f"{repo.chunk_size} bytes, but the repository was created with "
            f"{opened.config.chunk_size}: a chunk size is fixed when a repository is "
            f"created; set chunk_size: {opened.config.chunk_size} (or use a new one)",
        )


def open_repository(
    repo: Repository, *, create: bool = False, limit: int | None = None
) -> DataRepository:
    """Open the repository a catalog definition describes, with its passphrase or key file
    read now (not cached: the caller closes it). No repository there: NotFoundError, or
    with ``create`` (the first protect) a new one. A wrong key: SecurityError (exit 7).
    A setting the backend refuses or misses (an S3 endpoint): ValidationError naming
    ``repositories.<name>.<field>`` (exit 2). ``limit``: bytes/s, see repository_for."""
    password = read_secret(repo.password) if repo.password else None
    master_key = _read_key_file(repo) if repo.key_file else None
    return _open(repo, password=password, master_key=master_key, create=create, limit=limit)


def _open(
    repo: Repository,
    *,
    password: str | None,
    master_key: bytes | None,
    create: bool,
    limit: int | None,
) -> DataRepository:
    url = repo.url
    if repo.kind is RepositoryKind.MEMORY and "://" not in url:
        url = f"memory://{url}"
    # the repository's own credentials (S3 keys, a Swift account), read now from their
    # references and registered for redaction; the backend refuses names it does not know
    credentials = {name: read_secret(ref) for name, ref in repo.credentials.items()}
    try:
        backend = open_backend(url, credentials=credentials, limit=limit)
    except ValidationError as exc:  # a setting refused or missing (an S3 endpoint...)
        if exc.path.startswith("credentials."):
            raise ValidationError(f"repositories.{repo.name}.{exc.path}", exc.message) from None
        # a setting from this process's environment (HAVEN_S3_ENDPOINT...): name it too
        raise ValidationError(f"repositories.{repo.name}", f"{exc.path}: {exc.message}") from None
    state = repository_state_dir()  # this host's memory of each repository's newest head
    try:
        try:
            return DataRepository.open(
                backend, password=password, master_key=master_key, state_dir=state
            )
        except NotFoundError:
            if not create:
                raise
            # no repository there yet: the first protect creates it
            return DataRepository.init(
                backend, password=password, master_key=master_key, chunk_size=repo.chunk_size,
                state_dir=state,
            )  # fmt: skip
    except BaseException:
        backend.close()
        raise


def _read_key_file(repo: Repository) -> bytes:
    from haven.datamover import decode_key_file

    try:
        text = read_secret_file(repo.key_file or "")
    except SecretFileError as exc:
        raise SecurityError(
            f"repositories.{repo.name}.key_file {repo.key_file} cannot be used: it {exc.reason}"
        ) from None
    return decode_key_file(text)
