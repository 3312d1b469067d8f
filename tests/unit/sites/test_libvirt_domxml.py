"""Domain XML <-> ServerSpec, without a libvirt daemon."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("libvirt")  # the package imports the binding; the XML code itself does not

from haven.domain.inventory import DiskRole, VolumeInfo
from haven.sites.errors import SiteInputError
from haven.sites.libvirt.domxml import spec_from_xml, xml_from_spec

CAPTURED = """
<domain type='qemu'>
  <name>erp-db</name><uuid>5b1c3f4e-0000-4000-8000-000000000001</uuid>
  <memory unit='KiB'>262144</memory><vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/k/vmlinux</kernel><initrd>/k/initrd.gz</initrd><cmdline>console=ttyS0</cmdline></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/pool/erp-db-vda.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='/pool/erp-db-vdb.img'/><target dev='vdb' bus='virtio'/></disk>
    <interface type='network'><mac address='52:54:00:AA:BB:CC'/><source network='prod'/>
      <model type='virtio'/></interface>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices>
</domain>
"""


def test_capture_keeps_what_recreation_needs() -> None:
    spec = spec_from_xml(CAPTURED, {"vda": 1 << 30, "vdb": 2 << 30}.__getitem__)
    assert (spec.name, spec.vcpus, spec.memory_mib) == ("erp-db", 2, 256)
    assert [(d.target, d.size_bytes, d.format, d.role) for d in spec.disks] == [
        ("vda", 1 << 30, "qcow2", DiskRole.DATA),
        ("vdb", 2 << 30, "raw", DiskRole.DATA),
    ]
    assert spec.disks[0].source == "/pool/erp-db-vda.qcow2"
    assert [(n.network, n.mac) for n in spec.nics] == [("prod", "52:54:00:aa:bb:cc")]
    assert spec.boot.kernel == "/k/vmlinux" and spec.boot.machine == "pc-i440fx-7.2"
    assert spec.guest_agent and spec.source_id and spec.source_id.startswith("5b1c3f4e")


def test_recreate_maps_name_networks_and_volumes() -> None:
    spec = spec_from_xml(CAPTURED, lambda t: 1 << 30)
    vols = {t: VolumeInfo(f"/dr/{t}.qcow2", t, 1 << 30, "qcow2") for t in ("vda", "vdb")}
    root = ET.fromstring(
        xml_from_spec(spec, name="erp-db-dr", network_map={"prod": "dr-net"}, volumes=vols)
    )
    assert root.findtext("name") == "erp-db-dr"
    assert root.find("uuid") is None, "a fresh domain gets its own UUID"
    assert [s.get("file") for s in root.findall("devices/disk/source")] == [
        "/dr/vda.qcow2",
        "/dr/vdb.qcow2",
    ]
    assert root.find("devices/interface/source").get("network") == "dr-net"  # type: ignore[union-attr]
    assert root.find("devices/interface/mac").get("address") == "52:54:00:aa:bb:cc"  # type: ignore[union-attr]
    again = spec_from_xml(ET.tostring(root, encoding="unicode"), lambda t: 1 << 30)
    assert (again.vcpus, again.memory_mib, again.boot.kernel) == (2, 256, "/k/vmlinux")


def test_recreate_refuses_unmapped_network_or_missing_volume() -> None:
    spec = spec_from_xml(CAPTURED, lambda t: 1 << 30)
    vols = {t: VolumeInfo(f"/dr/{t}", t, 1, "qcow2") for t in ("vda", "vdb")}
    with pytest.raises(SiteInputError, match=r"network_map\.prod"):
        xml_from_spec(spec, name="x", network_map={}, volumes=vols)
    with pytest.raises(SiteInputError, match=r"volumes\.vdb"):
        xml_from_spec(spec, name="x", network_map={"prod": "p"}, volumes={"vda": vols["vda"]})


def test_acpi_is_captured_and_recreated() -> None:
    """Without <features><acpi/> libvirt starts QEMU with -no-acpi: the guest can then only
    halt, never power off, and every graceful stop ends forced."""
    vols = {t: VolumeInfo(f"/dr/{t}", t, 1, "qcow2") for t in ("vda", "vdb")}
    old = spec_from_xml(CAPTURED, lambda t: 1 << 30)  # defined without ACPI: kept so
    assert old.boot.acpi is False
    root = ET.fromstring(xml_from_spec(old, name="x", network_map={"prod": "p"}, volumes=vols))
    assert root.find("features/acpi") is None
    with_acpi = spec_from_xml(
        CAPTURED.replace("<devices>", "<features><acpi/><apic/></features><devices>"),
        lambda t: 1 << 30,
    )
    assert with_acpi.boot.acpi is True
    xml = xml_from_spec(with_acpi, name="x", network_map={"prod": "p"}, volumes=vols)
    assert ET.fromstring(xml).find("features/acpi") is not None
    assert spec_from_xml(xml, lambda t: 1 << 30).boot.acpi is True
