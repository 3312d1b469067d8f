"""A group protected into an ``s3://`` repository whose endpoint, region and keys are
repository ``credentials`` read from env references, through the CLI (separate
processes, no ``HAVEN_S3_*`` in their environment: the settings can only come from the
spec), against the Swift lab's S3 API: apply, protect, failover, data back bit for bit.
Marked ``swift``; without the lab: skip (developer), fail (CI)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.cli import haven
from tests.support.s3_lab import drop_bucket, s3_env
from tests.unit.engine.lab import SERVERS, disk_bytes, make_lab

from haven.datamover.backends.s3 import from_url

pytestmark = [pytest.mark.swift, pytest.mark.slow]

REPOSITORY = """\
repositories:
  - name: offsite
    url: s3://{bucket}/shop
    site: site-b
    key_file: {root}/repo.key
    credentials:
      endpoint: {{env: SHOP_S3_ENDPOINT}}
      region: {{env: SHOP_S3_REGION}}
      access_key: {{env: SHOP_S3_ACCESS_KEY}}
      secret_key: {{env: SHOP_S3_SECRET_KEY}}
"""


@pytest.fixture
def bucket() -> Iterator[tuple[str, dict[str, str]]]:
    lab = s3_env()
    name = f"haven-test-engine-{uuid.uuid4().hex[:8]}"
    yield name, lab
    backend = from_url(f"s3://{name}", lab)
    try:
        drop_bucket(backend)
    finally:
        backend.close()


def test_protect_and_failover_through_an_s3_repository_with_spec_credentials(
    bucket: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    name, lab_env = bucket
    lab = make_lab(tmp_path / "lab")
    text = lab.spec.read_text()
    start, end = text.index("repositories:"), text.index("policies:")
    lab.spec.write_text(text[:start] + REPOSITORY.format(bucket=name, root=lab.root) + text[end:])
    # the lab's settings under names only the spec refers to: no HAVEN_S3_* anywhere
    env = {k.replace("HAVEN_S3_", "SHOP_S3_"): v for k, v in lab_env.items()}
    home = tmp_path / "home"

    applied = haven(home, "apply", "-f", str(lab.spec), "--json", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    protect = haven(home, "protect", "shop", "--json", env=env, timeout=300)
    assert protect.returncode == 0, protect.stdout + protect.stderr
    op = json.loads(protect.stdout)
    assert int(op["result"]["bytes_sent"]) > 0
    assert lab_env["HAVEN_S3_SECRET_KEY"] not in protect.stdout + protect.stderr

    before = {s: disk_bytes(lab.site("site-a"), s) for s in SERVERS}
    lab.site("site-a").set_down(True)  # the protected site is gone
    failover = haven(home, "failover", "shop", "--json", env=env, timeout=300)
    assert failover.returncode == 0, failover.stdout + failover.stderr
    b = lab.site("site-b")
    assert {s: disk_bytes(b, s) for s in SERVERS} == before

    # without the referenced variables the repository cannot be opened: exit 7 naming them
    missing = haven(home, "protect", "shop", "--json", timeout=300)
    assert missing.returncode == 7 and "SHOP_S3_" in missing.stdout
