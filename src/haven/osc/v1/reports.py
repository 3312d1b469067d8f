"""``dr status`` (RPO compliance per group), ``dr usage`` (a window's usage per
project, for chargeback) and ``dr quota show [PROJECT]`` (limits and use)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

from haven.osc.client import DrError
from haven.osc.v1.base import DrLister, DrShowOne, Row, table

EXIT_INVALID = 2  # the CLI's ValidationError code
STATUS_FIELDS = [
    ("group", "Group"),
    ("state", "State"),
    ("compliance", "Compliance"),
    ("rpo_seconds", "RPO (s)"),
    ("last_point", "Last Point"),
    ("last_point_age_seconds", "Last Point Age (s)"),
    ("active_site", "Active Site"),
    ("standby_site", "Standby Site"),
    ("busy_with", "Busy With"),
]
USAGE_FIELDS = [
    ("project", "Project"),
    ("groups", "Groups"),
    ("protected_gb_hours", "Protected GB-Hours"),
    ("stored_bytes", "Stored Bytes"),
    ("bytes_between_sites", "Bytes Between Sites"),
    ("repository_bytes", "Repository Bytes"),
    ("points_taken", "Points Taken"),
    ("drills_run", "Drills Run"),
    ("drills_failed", "Drills Failed"),
    ("failovers_run", "Failovers Run"),
    ("failovers_failed", "Failovers Failed"),
    ("failbacks_run", "Failbacks Run"),
    ("failbacks_failed", "Failbacks Failed"),
]
QUOTAS = ("groups", "protected_bytes", "points")


class ShowStatus(DrLister):
    """Show each group's RPO compliance, last point and last operation."""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], list[Row]]:
        return table(STATUS_FIELDS, self.dr.get("/status")["groups"])


def _moment(option: str, text: str) -> datetime:
    """ISO 8601; without a time zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise DrError(
            f"{option}: {text!r} is not an ISO 8601 time (e.g. 2026-01-01T00:00:00Z)",
            EXIT_INVALID,
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class ShowUsage(DrLister):
    """Show usage per project in [start, end) (default: the last 30 days)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--start", metavar="<time>", help="ISO 8601 (default: end - 30 days)")
        parser.add_argument("--end", metavar="<time>", help="ISO 8601 (default: now)")
        parser.add_argument(
            "--project", metavar="<project-id>", help="One project (admin: any; else your own)"
        )
        parser.add_argument(
            "--no-stored", action="store_true", help="Skip measuring stored bytes (faster)"
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], list[Row]]:
        a = parsed_args
        end = _moment("--end", a.end) if a.end else datetime.now(UTC)
        start = _moment("--start", a.start) if a.start else end - timedelta(days=30)
        if start >= end:
            raise DrError("--start: must be before --end", EXIT_INVALID)
        report = self.dr.get(
            "/usage",
            start=start.isoformat(),
            end=end.isoformat(),
            project=a.project,
            stored="false" if a.no_stored else None,
        )
        return table(USAGE_FIELDS, report["projects"])


class ShowQuota(DrShowOne):
    """Show a project's quotas: each limit (None: unlimited) and its use."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(
            "project", metavar="<project-id>", nargs="?", help="Project ID (default: yours)"
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], Row]:
        project = parsed_args.project or self.app.client_manager.auth_ref.project_id
        quota: dict[str, Any] = self.dr.get(f"/quotas/{project}")
        names = ["project"]
        values: list[Any] = [quota["project"]]
        for res in QUOTAS:
            names += [f"{res}_limit", f"{res}_in_use"]
            values += [quota[res]["limit"], quota[res]["in_use"]]
        return tuple(names), tuple(values)
