"""Every driver implements every SiteDriver method with the protocol's parameters."""

from __future__ import annotations

import inspect

import pytest

from haven.sites.base import SiteDriver


def _drivers() -> list[type]:
    from haven.sites.fake import FakeDriver

    out: list[type] = [FakeDriver]
    try:
        from haven.sites.libvirt import LibvirtDriver
    except ImportError:  # libvirt-python is an optional extra
        pass
    else:
        out.append(LibvirtDriver)
    return out


PROTOCOL_METHODS = [n for n, v in vars(SiteDriver).items() if callable(v) and not n.startswith("_")]


def test_protocol_has_the_engine_surface() -> None:
    for name in ("create_point", "open_point_disk", "release_point", "define_server",
                 "wait_ready", "capabilities", "create_volume", "open_volume_writer"):  # fmt: skip
        assert name in PROTOCOL_METHODS


@pytest.mark.parametrize("driver", _drivers(), ids=lambda d: d.__name__)
def test_driver_matches_protocol_signatures(driver: type) -> None:
    for name in PROTOCOL_METHODS:
        impl = getattr(driver, name, None)
        assert impl is not None, f"{driver.__name__} lacks {name}"
        want = inspect.signature(getattr(SiteDriver, name))
        got = inspect.signature(impl)
        assert list(got.parameters) == list(want.parameters), f"{driver.__name__}.{name}"
        for p in want.parameters.values():
            assert got.parameters[p.name].kind == p.kind, f"{driver.__name__}.{name}({p.name})"
            assert (got.parameters[p.name].default is inspect.Parameter.empty) == (
                p.default is inspect.Parameter.empty
            ), f"{driver.__name__}.{name}({p.name}) default"


def _roles() -> list[tuple[type, type]]:
    """(driver class, engine role it takes on)."""
    from haven.engine import ports
    from haven.sites.fake import FakeDriver
    from haven.sites.openstack import OpenStackDriver

    fake = (ports.NetworkCreation, ports.ProjectInfrastructure, ports.ProjectServers,
            ports.ServerAddresses)  # fmt: skip
    return [(FakeDriver, r) for r in fake] + [
        (OpenStackDriver, r) for r in (*fake, ports.NativeBackups)
    ]


@pytest.mark.parametrize(
    ("driver", "role"), _roles(), ids=lambda x: x.__name__ if isinstance(x, type) else str(x)
)
def test_driver_takes_on_engine_roles_with_their_signatures(driver: type, role: type) -> None:
    methods = [n for n, v in vars(role).items() if callable(v) and not n.startswith("_")]
    assert methods
    for name in methods:
        impl = getattr(driver, name, None)
        assert impl is not None, f"{driver.__name__} lacks {role.__name__}.{name}"
        want = inspect.signature(getattr(role, name))
        got = inspect.signature(impl)
        assert list(got.parameters) == list(want.parameters), f"{driver.__name__}.{name}"
        for p in want.parameters.values():
            assert got.parameters[p.name].kind == p.kind, f"{driver.__name__}.{name}({p.name})"
