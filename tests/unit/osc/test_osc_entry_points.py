"""The plugin's registration: every entry point pyproject.toml declares for osc loads
(the plugin module keeps osc-lib's contract; each command is a cliff command), and the
installed distribution carries exactly those entry points (importlib.metadata, where
osc's stevedore finds them). The latter fails until haven-dr is (re)installed from this
pyproject.toml (``pip install -e .[osc]``; scripts/dev.sh installs every extra)."""

from __future__ import annotations

import argparse
import importlib.metadata as md

from cliff.command import Command

from tests.support.osc import declared_entry_points

COMMANDS = {
    "dr_group_list", "dr_group_show", "dr_plan_list", "dr_plan_show",
    "dr_point_list", "dr_point_show", "dr_operation_list", "dr_operation_show",
    "dr_status", "dr_usage", "dr_quota_show",
    "dr_protect", "dr_drill", "dr_cleanup", "dr_failover", "dr_failback",
}  # fmt: skip


def test_the_declared_plugin_keeps_the_osc_lib_contract() -> None:
    declared = declared_entry_points()
    assert declared["openstack.cli.extension"] == {"dr": "haven.osc.plugin"}
    plugin = md.EntryPoint("dr", "haven.osc.plugin", "openstack.cli.extension").load()
    assert (plugin.API_NAME, plugin.API_VERSION_OPTION) == ("dr", "os_dr_api_version")
    assert plugin.API_VERSIONS == ("1",)
    parser = plugin.build_option_parser(argparse.ArgumentParser())
    assert parser.parse_args([]).os_dr_api_version == "1"
    assert callable(plugin.make_client)


def test_every_declared_command_is_a_cliff_command() -> None:
    commands = declared_entry_points()["openstack.dr.v1"]
    assert set(commands) == COMMANDS
    for name, value in commands.items():
        cls = md.EntryPoint(name, value, "openstack.dr.v1").load()
        assert issubclass(cls, Command), name
        assert (cls.__doc__ or "").strip(), f"{name}: its docstring is the help line"


def test_the_installed_distribution_registers_them() -> None:
    installed = md.distribution("haven-dr").entry_points
    for group, declared in declared_entry_points().items():
        found = {ep.name: ep.value for ep in installed if ep.group == group}
        assert found == declared, (
            f"{group}: the installed haven-dr is stale; reinstall it (pip install -e '.[osc]')"
        )
        for ep in installed.select(group=group):
            ep.load()
