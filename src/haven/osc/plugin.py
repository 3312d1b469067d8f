"""The osc-lib plugin contract (entry point ``openstack.cli.extension: dr``):
``API_NAME``, ``API_VERSION_OPTION``, ``API_VERSIONS``, ``make_client`` and
``build_option_parser``. The commands are the ``openstack.dr.v1`` entry points."""

from __future__ import annotations

import argparse
import os
from typing import Any

from keystoneauth1 import exceptions as ksa_exc

from haven.osc.client import SERVICE_TYPE, DrClient

API_NAME = "dr"
API_VERSION_OPTION = "os_dr_api_version"
DEFAULT_API_VERSION = "1"
API_VERSIONS = ("1",)  # osc accepts a tuple; each version names the group openstack.dr.v<N>


def make_client(instance: Any) -> DrClient:
    """``instance`` is osc's ClientManager: its keystoneauth session carries the user's
    token; the endpoint is the catalog's ``disaster-recovery`` one for the session's
    region and interface (or ``disaster_recovery_endpoint_override`` from clouds.yaml)."""
    try:
        endpoint = instance.get_endpoint_for_service_type(
            SERVICE_TYPE, region_name=instance.region_name, interface=instance.interface
        )
    except ksa_exc.EndpointNotFound:
        endpoint = None  # the client's first request says so, naming region and interface
    return DrClient(
        session=instance.session,
        endpoint=endpoint,
        region=instance.region_name,
        interface=instance.interface or "public",
    )


def build_option_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--os-dr-api-version",
        metavar="<dr-api-version>",
        default=os.environ.get("OS_DR_API_VERSION", DEFAULT_API_VERSION),
        choices=API_VERSIONS,
        help="Haven (disaster-recovery) API version, default=1 (Env: OS_DR_API_VERSION)",
    )
    return parser
