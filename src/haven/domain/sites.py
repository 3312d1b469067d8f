"""Sites and repositories: where workloads run and where recovery-point data lives."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from haven.domain.secrets import SecretRef


class SiteDriver(Enum):
    LIBVIRT = "libvirt"
    OPENSTACK = "openstack"
    FAKE = "fake"  # in-memory, for tests and demos without a lab


SCRATCH_DIR_HINT = (
    "a libvirt site needs 'scratch_dir': an absolute directory on the libvirt host where "
    "open recovery points keep their copy-on-write overlays (e.g. /var/lib/haven/scratch)"
)


@dataclass(frozen=True, slots=True)
class Site:
    """One cloud or hypervisor estate.

    libvirt: ``uri`` is the libvirt connection URI; ``scratch_dir`` a directory on the
    libvirt host for the overlays of open points. openstack: ``cloud`` names a
    ``clouds.yaml`` entry (credentials stay there) and ``region`` the region;
    ``compute_hosts`` maps Nova compute host names to the libvirt URI through which Haven
    reaches that host's guests (ordered freeze, guest agent checks); none: no guest access.
    """

    name: str
    driver: SiteDriver
    uri: str | None = None
    cloud: str | None = None
    region: str | None = None
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    scratch_dir: str | None = None
    compute_hosts: dict[str, str] = field(default_factory=dict)


class RepositoryKind(Enum):
    LOCAL = "local"
    SWIFT = "swift"
    S3 = "s3"
    MEMORY = "memory"


class KeyStoreKind(Enum):
    """Where the projects' data keys of a repository live (engine/keys.py)."""

    LOCAL = "local"  # files under $HAVEN_HOME/keys/local, created by `haven keys create`
    BARBICAN = "barbican"  # the tenant's Barbican secret, read through an ACL (castellan)


@dataclass(frozen=True, slots=True)
class Repository:
    """Content-addressed, encrypted store of recovery-point data.

    ``url``: an absolute path (local), ``swift://container/prefix`` or
    ``s3://bucket/prefix``. ``password`` references the passphrase that unwraps the
    master key; ``key_file`` is the alternative. ``key_store`` says where the data keys
    of the projects whose groups use this repository live (``key_cloud``: for Barbican,
    the clouds.yaml entry Haven authenticates with, whose region finds Barbican in the
    Keystone catalog).
    """

    name: str
    url: str
    kind: RepositoryKind
    site: str | None = None
    password: SecretRef | None = None
    key_file: str | None = None
    chunk_size: int = 1024 * 1024
    credentials: dict[str, SecretRef] = field(default_factory=dict)
    key_store: KeyStoreKind = KeyStoreKind.LOCAL
    key_cloud: str | None = None  # barbican: the clouds.yaml entry of Haven's service user
