"""``dr operation list|show`` and the actions, each one submitted operation:
``dr protect GROUP``, ``dr drill PLAN`` (a test failover), ``dr cleanup PLAN`` (ends the
drill), ``dr failover PLAN``, ``dr failback PLAN``. An action prints the operation the API
accepted; ``--wait`` polls it to its end and exits non-zero (the operation's exit code)
when it did not succeed."""

from __future__ import annotations

import argparse
import time
from typing import Any

from haven.osc.client import DrClient, DrError
from haven.osc.v1.base import DrLister, DrShowOne, Row, Structured, record, table

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
EXIT_TIMEOUT = 5  # the CLI's ExternalError code
POLL_SECONDS = 1.0
FIELDS = [
    ("id", "ID"),
    ("kind", "Kind"),
    ("group", "Group"),
    ("state", "State"),
    ("created_at", "Created At"),
    ("finished_at", "Finished At"),
]


class Steps(Structured):
    """The step log: one ``seq name state: detail`` line per step in a table."""

    def human_readable(self) -> str:
        lines = []
        for st in self._value:
            detail = f": {st['detail']}" if st["detail"] else ""
            lines.append(f"{st['seq']} {st['name']} {st['state']}{detail}")
        return "\n".join(lines)


def _shown(op: dict[str, Any]) -> tuple[tuple[str, ...], Row]:
    """The operation without its links, its steps (when shown) as a Steps column."""
    names, values = record({k: v for k, v in op.items() if k not in ("links", "steps")})
    if "steps" not in op:
        return names, values
    return (*names, "steps"), (*values, Steps(op["steps"]))


class ListOperation(DrLister):
    """List operations, newest first."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--group", metavar="<group>", help="Only this group's operations")
        parser.add_argument(
            "--limit", metavar="<n>", type=int, help="At most <n> operations (1..1000, 50)"
        )
        parser.add_argument(
            "--marker", metavar="<operation>", help="The page after this operation ID"
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], list[Row]]:
        a = parsed_args
        page = self.dr.get("/operations", group=a.group, limit=a.limit, marker=a.marker)
        return table(FIELDS, page["operations"])


class ShowOperation(DrShowOne):
    """Show an operation with its step log."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("operation", metavar="<operation>", help="Operation ID")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], Row]:
        return _shown(self.dr.get(f"/operations/{parsed_args.operation}"))


def wait(client: DrClient, op: dict[str, Any], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while op["state"] not in TERMINAL:
        if time.monotonic() >= deadline:
            raise DrError(
                f"operation {op['id']} still {op['state']} after {timeout:g}s; "
                f"follow it with: openstack dr operation show {op['id']}",
                EXIT_TIMEOUT,
            )
        time.sleep(POLL_SECONDS)  # polling the operation's end, bounded by the deadline
        op = client.get(f"/operations/{op['id']}")
    return op


class _Action(DrShowOne):
    """Submit one operation (``kind`` on ``target``, the group or plan named by the
    positional argument) and show it."""

    kind = ""
    target = "plan"

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(self.target, metavar=f"<{self.target}>", help=f"{self.target} name")
        parser.add_argument(
            "--wait", action="store_true", help="Wait for the operation to end; exit non-zero "
            "unless it succeeded"
        )  # fmt: skip
        parser.add_argument(
            "--wait-timeout", metavar="<seconds>", type=float, default=3600.0,
            help="With --wait: give up waiting after this long (3600; the operation goes on)",
        )  # fmt: skip
        parser.add_argument(
            "--idempotency-key", metavar="<key>",
            help="Retrying with the same key (and arguments) returns the same operation",
        )  # fmt: skip
        self.add_options(parser)
        return parser

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        """The action's own options."""

    def body(self, parsed_args: argparse.Namespace) -> dict[str, Any]:
        return {"kind": self.kind, self.target: getattr(parsed_args, self.target)}

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], Row]:
        key = parsed_args.idempotency_key
        headers = {"Idempotency-Key": key} if key else None
        op = self.dr.post("/operations", self.body(parsed_args), headers)
        if parsed_args.wait:
            op = wait(self.dr, op, parsed_args.wait_timeout)
            if op["state"] != "succeeded":
                detail = f": {op['error']}" if op.get("error") else ""
                self.app.stderr.write(f"Error: operation {op['id']} {op['state']}{detail}\n")
                self.exit_code = int(op.get("exit_code") or 1)
            op = self.dr.get(f"/operations/{op['id']}")  # with its step log
        return _shown(op)


class _WithPoint(_Action):
    def add_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--point", metavar="<point>", help="Recovery point ID (default: the newest intact)"
        )

    def body(self, parsed_args: argparse.Namespace) -> dict[str, Any]:
        body = super().body(parsed_args)
        if parsed_args.point:
            body["point"] = parsed_args.point
        return body


class Protect(_Action):
    """Take a recovery point of a protection group now."""

    kind = "protect"
    target = "group"


class Drill(_WithPoint):
    """Test-fail over a plan at the standby site, leaving production running."""

    kind = "test-failover"


class Cleanup(_Action):
    """Remove what a drill started at the standby site."""

    kind = "cleanup"


class Failover(_WithPoint):
    """Fail a plan over to its standby site."""

    kind = "failover"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--planned", action="store_true",
            help="Planned migration: a last point of the running source first",
        )  # fmt: skip

    def body(self, parsed_args: argparse.Namespace) -> dict[str, Any]:
        return {**super().body(parsed_args), "planned": parsed_args.planned}


class Failback(_Action):
    """Fail a plan back to its original site."""

    kind = "failback"
