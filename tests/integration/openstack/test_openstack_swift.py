"""The recovery region's Swift (Keystone auth) stores and returns objects unchanged."""

from __future__ import annotations

import os
import uuid

import pytest
from tests.integration.openstack import oslab

pytestmark = pytest.mark.openstack


def test_object_round_trip_at_recovery_region() -> None:
    lab = oslab.open_lab()
    c = lab.conn(oslab.R2)
    container = f"hit-{uuid.uuid4().hex[:6]}"
    data = os.urandom(3 * oslab.MiB + 17)
    c.object_store.create_container(name=container)
    try:
        c.object_store.upload_object(container=container, name="chunk", data=data)
        assert c.object_store.download_object("chunk", container=container) == data
    finally:
        c.object_store.delete_object("chunk", container=container, ignore_missing=True)
        c.object_store.delete_container(container, ignore_missing=True)
