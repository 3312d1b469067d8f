"""``dr point list GROUP`` (oldest first) and ``dr point show ID``."""

from __future__ import annotations

import argparse

from haven.osc.v1.base import DrLister, DrShowOne, Row, record, table

FIELDS = [
    ("id", "ID"),
    ("created_at", "Created At"),
    ("state", "State"),
    ("consistency", "Consistency"),
    ("volumes", "Volumes"),
    ("bytes_sent", "Bytes Sent"),
    ("damaged", "Damaged"),
]


class ListPoint(DrLister):
    """List a group's recovery points, oldest first."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("group", metavar="<group>", help="Group name")
        parser.add_argument(
            "--limit", metavar="<n>", type=int, help="Only the newest <n> points (1..1000)"
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], list[Row]]:
        page = self.dr.get("/points", group=parsed_args.group, limit=parsed_args.limit)
        return table(FIELDS, page["points"])


class ShowPoint(DrShowOne):
    """Show a recovery point."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("point", metavar="<point>", help="Point ID")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], Row]:
        return record(self.dr.get(f"/points/{parsed_args.point}"))
