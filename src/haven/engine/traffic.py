"""Which bytes cross between sites: the accounting behind every byte figure Haven reports.

Every transfer of point data has two ends: the disks of one site (read by a backup, written
by a replica update or a restore) and the repository. The repository's site is declared
in the spec (``repositories[].site``); a transfer crosses between sites when the disks'
site is another one:

- protect: the data read at the active site and sent to the repository (``bytes_sent``)
  crosses unless the repository is at the active site (reverse protection from the
  recovery site into a repository kept there); the chunks fetched from the repository to
  update the warm-standby replicas (``replica_bytes_fetched``) cross unless the repository
  is at the standby site;
- failover, drill, failback: the chunks fetched from the repository to restore
  (``bytes_fetched``) cross unless the repository is at the target site.

A repository without a declared site is counted as elsewhere (every transfer crosses):
Haven cannot tell, and reporting less than a link carried is the worse error.

Results give each transfer by name, and two totals: ``repository_bytes``, every byte sent
to or fetched from the repository (child operations included: a failback's reverse and
final points), and ``bytes_between_sites``, the part of it that crosses by the rule above.
The rule places the data mover beside the disks it reads and writes. Haven's data mover
runs in Haven's own process: where that process runs at a third place, or at another site
than both ends (the KVM lab's link test runs Haven at the protected site with the
repository at the recovery site), transfers between the repository and disks at the
repository's site travel through it as well, so the link to it carries up to
``repository_bytes``. Bytes read from or written to a site's disks by the data mover
(``bytes_read``, ``bytes_written``) are the site driver's traffic; byte counts are of
stored (compressed, encrypted) chunk data and pack indexes, not of the repository's
metadata objects or protocol framing. Native copies (data path ``cinder-backup``) move
inside the site's own backup service: their ``bytes_sent`` is what the site reports and
is counted in neither total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from haven.domain.resources import ResourceKind
from haven.domain.sites import Repository
from haven.engine import services

REPOSITORY_BYTES = "repository_bytes"
BETWEEN_SITES = "bytes_between_sites"


def repository_site(name: str) -> str | None:
    """The site the repository ``name`` declares (None: not declared, or no repository)."""
    if not name:
        return None
    repo = services.catalog().get(ResourceKind.REPOSITORY, name)
    assert isinstance(repo, Repository)
    return repo.site


def crosses(repository_at: str | None, site: str) -> bool:
    """Whether data between ``site``'s disks and a repository at ``repository_at`` crosses
    between sites (an undeclared repository site counts as another site)."""
    return repository_at != site


def across(repository_at: str | None, site: str, nbytes: int) -> int:
    """``nbytes`` if they cross between sites, else 0."""
    return nbytes if crosses(repository_at, site) else 0


def with_children(result: dict[str, Any], children: Iterable[Mapping[str, Any]]) -> None:
    """Add the totals of child operations (their results) to ``result``'s totals."""
    for child in children:
        for key in (REPOSITORY_BYTES, BETWEEN_SITES):
            result[key] = int(result.get(key, 0)) + int(child.get(key, 0))
