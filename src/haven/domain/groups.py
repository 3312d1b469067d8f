"""Protection groups: the unit of consistency, and the DR state of each group."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from haven.domain.states import StateMachine


class MemberKind(Enum):
    SERVER = "server"
    VOLUME = "volume"


class QuiesceMethod(Enum):
    AGENT = "agent"  # guest agent fsfreeze
    HOOK = "hook"  # the member's own pre-freeze/post-thaw hooks do the quiesce
    NONE = "none"  # crash-consistent for this member


class OnError(Enum):
    FAIL = "fail"
    CONTINUE = "continue"


class HookWhere(Enum):
    GUEST = "guest"  # run inside the guest through the agent
    HOST = "host"  # run on the Haven host


@dataclass(frozen=True, slots=True)
class Hook:
    command: tuple[str, ...]
    timeout_seconds: int = 30
    on_error: OnError = OnError.FAIL
    where: HookWhere = HookWhere.GUEST


@dataclass(frozen=True, slots=True)
class Member:
    """One server (with its attached volumes, or the listed subset) or standalone volume.

    A standalone volume may be attached at the source to a server that is not itself
    protected (``attached_to``): each point captures that server's definition (CPU,
    memory, NICs, boot; not its other disks), and a plan stage naming it recreates it at
    the recovery site around the recovered volume (a "host"). A volume attached to a
    server member of the same group is refused: that member protects it already.
    """

    kind: MemberKind
    ref: str  # the server or volume name at the source site
    quiesce: QuiesceMethod = QuiesceMethod.AGENT
    volumes: tuple[str, ...] = ()  # empty: every attached volume
    pre_freeze: tuple[Hook, ...] = ()
    post_thaw: tuple[Hook, ...] = ()
    attached_to: str | None = None  # volume members: the (unprotected) server using it


@dataclass(frozen=True, slots=True)
class ProtectionGroup:
    """Members are frozen in list order and thawed in reverse order.

    ``project``: the Keystone project id that owns the group (None: the operator's, whose
    data is under the repository's own key); a project's data is encrypted under that
    project's key (engine/keys.py)."""

    name: str
    source_site: str
    target_site: str
    policy: str
    members: tuple[Member, ...]
    repository: str | None = None
    description: str = ""
    project: str | None = None

    def servers(self) -> tuple[str, ...]:
        return tuple(m.ref for m in self.members if m.kind is MemberKind.SERVER)

    def volume_members(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.kind is MemberKind.VOLUME)

    def hosts(self) -> tuple[str, ...]:
        """Servers that volume members are attached to (recreated around them, not
        protected themselves), in member order, each once."""
        seen: dict[str, None] = {}
        for m in self.volume_members():
            if m.attached_to:
                seen.setdefault(m.attached_to, None)
        return tuple(seen)

    def recoverable(self) -> tuple[str, ...]:
        """Every server a recovery plan may boot: the server members, then the hosts."""
        return self.servers() + tuple(h for h in self.hosts() if h not in self.servers())


class GroupState(Enum):
    UNPROTECTED = "unprotected"  # defined, no committed point yet
    PROTECTED = "protected"  # points are being taken towards the target site
    SUSPENDED = "suspended"  # protection paused by the operator; RPO may grow
    FAILING_OVER = "failing-over"
    FAILED_OVER = "failed-over"  # running at the target site
    REVERSE_PROTECTED = "reverse-protected"  # failed over and protected back to source
    FAILING_BACK = "failing-back"


_G = GroupState
GROUP_STATES: StateMachine[GroupState] = StateMachine(
    "group",
    _G.UNPROTECTED,
    {
        _G.UNPROTECTED: frozenset({_G.PROTECTED, _G.SUSPENDED}),
        _G.PROTECTED: frozenset({_G.SUSPENDED, _G.FAILING_OVER}),
        _G.SUSPENDED: frozenset({_G.PROTECTED, _G.UNPROTECTED, _G.FAILING_OVER}),
        _G.FAILING_OVER: frozenset({_G.FAILED_OVER, _G.PROTECTED}),
        _G.FAILED_OVER: frozenset({_G.REVERSE_PROTECTED}),
        _G.REVERSE_PROTECTED: frozenset({_G.FAILING_BACK}),
        # a completed failback swaps the site roles and the group is protected again
        _G.FAILING_BACK: frozenset({_G.PROTECTED, _G.REVERSE_PROTECTED}),
    },
)
