"""Domain XML <-> ServerSpec. Only what Haven captures and re-creates; nothing host-specific
(UUID, PCI addresses, channel paths, emulator binary) crosses over, so a spec defines a
fresh domain at any libvirt site."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from haven.domain.inventory import BootSpec, DiskRole, DiskSpec, NicSpec, ServerSpec, VolumeInfo
from haven.sites.errors import SiteInputError

AGENT_CHANNEL = "org.qemu.guest_agent.0"
_MEM_UNITS = {
    "b": 1 / 1048576,
    "bytes": 1 / 1048576,
    "kib": 1 / 1024,
    "k": 1 / 1024,
    "mib": 1,
    "m": 1,
    "gib": 1024,
    "g": 1024,
}


def _text(root: ET.Element, path: str) -> str | None:
    el = root.find(path)
    return el.text if el is not None and el.text else None


def _attr(root: ET.Element, path: str, name: str) -> str | None:
    el = root.find(path)
    return el.get(name) if el is not None else None


def spec_from_xml(xml: str, disk_size: Callable[[str], int]) -> ServerSpec:
    """Capture a domain. ``disk_size(target)`` returns a disk's virtual size in bytes."""
    root = ET.fromstring(xml)
    mem = root.find("memory")
    if mem is None or mem.text is None:
        raise SiteInputError("domain.memory", "missing")
    memory_mib = int(int(mem.text) * _MEM_UNITS[mem.get("unit", "KiB").lower()])
    boot = BootSpec(
        kernel=_text(root, "os/kernel"),
        initrd=_text(root, "os/initrd"),
        cmdline=_text(root, "os/cmdline"),
        machine=_attr(root, "os/type", "machine"),
        acpi=root.find("features/acpi") is not None,
    )
    disks: list[DiskSpec] = []
    for d in root.findall("devices/disk"):
        if d.get("device", "disk") != "disk":
            continue
        target = d.find("target")
        source = d.find("source")
        driver = d.find("driver")
        if target is None:
            continue
        dev = target.get("dev", "")
        boot_disk = boot.kernel is None and not disks
        disks.append(
            DiskSpec(
                target=dev,
                size_bytes=disk_size(dev),
                role=DiskRole.BOOT if boot_disk else DiskRole.DATA,
                format=driver.get("type", "raw") if driver is not None else "raw",
                bus=target.get("bus", "virtio"),
                source=source.get("file") if source is not None else None,
            )
        )
    nics = tuple(
        NicSpec(
            network=_attr(i, "source", "network") or _attr(i, "source", "bridge") or "",
            mac=(_attr(i, "mac", "address") or "").lower() or None,
            model=_attr(i, "model", "type") or "virtio",
        )
        for i in root.findall("devices/interface")
    )
    agent = any(
        _attr(c, "target", "name") == AGENT_CHANNEL for c in root.findall("devices/channel")
    )
    return ServerSpec(
        name=_text(root, "name") or "",
        vcpus=int(_text(root, "vcpu") or "1"),
        memory_mib=memory_mib,
        disks=tuple(disks),
        nics=nics,
        boot=boot,
        guest_agent=agent,
        source_id=_text(root, "uuid"),
    )


def xml_from_spec(
    spec: ServerSpec,
    *,
    name: str,
    network_map: dict[str, str],
    volumes: dict[str, VolumeInfo],
    console_log: str | None = None,
) -> str:
    """Domain XML for ``spec``. Every disk target needs a volume; every NIC network a mapping.

    Domains are ``type='qemu'`` (TCG): this lab's KVM cannot run stock kernels (see
    shared/notes/kvm-lab.md). A site config could switch to 'kvm' later.
    """
    dom = ET.Element("domain", type="qemu")
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "memory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(dom, "vcpu").text = str(spec.vcpus)
    os_el = ET.SubElement(dom, "os")
    t = ET.SubElement(os_el, "type", arch=spec.boot.arch)
    t.text = "hvm"
    if spec.boot.machine:
        t.set("machine", spec.boot.machine)
    if spec.boot.kernel:
        ET.SubElement(os_el, "kernel").text = spec.boot.kernel
        if spec.boot.initrd:
            ET.SubElement(os_el, "initrd").text = spec.boot.initrd
        if spec.boot.cmdline:
            ET.SubElement(os_el, "cmdline").text = spec.boot.cmdline
    else:
        ET.SubElement(os_el, "boot", dev="hd")
    if spec.boot.acpi:  # without it libvirt starts QEMU with -no-acpi: no power-off
        ET.SubElement(ET.SubElement(dom, "features"), "acpi")
    ET.SubElement(dom, "cpu", mode="maximum", check="none")
    ET.SubElement(dom, "on_reboot").text = "destroy"
    devices = ET.SubElement(dom, "devices")
    for disk in spec.disks:
        vol = volumes.get(disk.target)
        if vol is None:
            raise SiteInputError(f"volumes.{disk.target}", "no volume for this disk")
        d = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(d, "driver", name="qemu", type=vol.format, cache="none", discard="unmap")
        ET.SubElement(d, "source", file=vol.id)
        ET.SubElement(d, "target", dev=disk.target, bus=disk.bus)
    for nic in spec.nics:
        net = network_map.get(nic.network)
        if net is None:
            raise SiteInputError(f"network_map.{nic.network}", "no target network for this NIC")
        i = ET.SubElement(devices, "interface", type="network")
        ET.SubElement(i, "source", network=net)
        if nic.mac:
            ET.SubElement(i, "mac", address=nic.mac)
        ET.SubElement(i, "model", type=nic.model)
    if spec.guest_agent:
        ch = ET.SubElement(devices, "channel", type="unix")
        ET.SubElement(ch, "target", type="virtio", name=AGENT_CHANNEL)
    if console_log:
        s = ET.SubElement(devices, "serial", type="file")
        ET.SubElement(s, "source", path=console_log)
    ET.SubElement(devices, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")
