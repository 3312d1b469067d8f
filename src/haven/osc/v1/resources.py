"""``dr group list|show`` and ``dr plan list|show``: the caller's project's groups and
plans (an admin's token: every project's). Lists follow ``next_marker`` to the end."""

from __future__ import annotations

import argparse
from typing import Any

from haven.osc.client import DrClient
from haven.osc.v1.base import DrLister, DrShowOne, Row, record, table


def _all(client: DrClient, plural: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    marker = None
    while True:
        page = client.get(f"/{plural}", marker=marker)
        items.extend(page["items"])
        marker = page.get("next_marker")
        if not marker:
            return items


def _flat(item: dict[str, Any]) -> dict[str, Any]:
    """The resource's spec fields with its name and project first."""
    spec = {k: v for k, v in item["spec"].items() if k not in ("name", "project")}
    return {"name": item["name"], "project": item.get("project"), **spec}


def _members(spec: dict[str, Any]) -> list[str]:
    """Member names (servers and volumes by their reference at the source site)."""
    return [str(m.get("ref", "")) for m in spec.get("members", []) if isinstance(m, dict)]


class ListGroup(DrLister):
    """List protection groups."""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], list[Row]]:
        rows = [{**_flat(g), "members": _members(g["spec"])} for g in _all(self.dr, "groups")]
        fields = [
            ("name", "Name"),
            ("project", "Project"),
            ("source_site", "Source"),
            ("target_site", "Target"),
            ("policy", "Policy"),
            ("members", "Members"),
        ]
        return table(fields, rows)


class ShowGroup(DrShowOne):
    """Show a protection group."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("group", metavar="<group>", help="Group name")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], Row]:
        return record(_flat(self.dr.get(f"/groups/{parsed_args.group}")))


class ListPlan(DrLister):
    """List recovery plans."""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], list[Row]]:
        rows = [
            {**_flat(p), "stages": len(p["spec"].get("stages", []))} for p in _all(self.dr, "plans")
        ]
        fields = [("name", "Name"), ("group", "Group"), ("project", "Project"),
                  ("stages", "Stages")]  # fmt: skip
        return table(fields, rows)


class ShowPlan(DrShowOne):
    """Show a recovery plan."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("plan", metavar="<plan>", help="Plan name")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], Row]:
        return record(_flat(self.dr.get(f"/plans/{parsed_args.plan}")))
