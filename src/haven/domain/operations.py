"""Operations: durable runs of workflows, each with a readable step log."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from haven.domain.errors import ExitCode, HavenError
from haven.domain.states import StateMachine


class OperationKind(Enum):
    PROTECT = "protect"
    FAILOVER = "failover"
    TEST_FAILOVER = "test-failover"
    CLEANUP = "cleanup"
    FAILBACK = "failback"
    MIGRATE = "migrate"
    VERIFY = "verify"
    PRUNE = "prune"


class OperationState(Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


_O = OperationState
OPERATION_STATES: StateMachine[OperationState] = StateMachine(
    "operation",
    _O.PENDING,
    {
        # PENDING -> FAILED: the engine could not start the recorded operation (its group
        # lock is released with it)
        _O.PENDING: frozenset({_O.RUNNING, _O.FAILED, _O.CANCELLED}),
        # RUNNING -> RUNNING is how a resumed operation continues after a crash
        _O.RUNNING: frozenset({_O.RUNNING, _O.SUCCEEDED, _O.FAILED, _O.CANCELLED}),
        _O.SUCCEEDED: frozenset(),
        _O.FAILED: frozenset({_O.RUNNING}),  # an operator may resume a failed operation
        _O.CANCELLED: frozenset(),
    },
)


class StepState(Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


_S = StepState
STEP_STATES: StateMachine[StepState] = StateMachine(
    "step",
    _S.RUNNING,
    {
        _S.RUNNING: frozenset({_S.DONE, _S.FAILED, _S.SKIPPED}),
        # steps run at least once: a process killed after a step's work but before the
        # workflow engine recorded it runs the step again (it is idempotent)
        _S.DONE: frozenset({_S.RUNNING}),
        _S.FAILED: frozenset({_S.RUNNING}),  # retried on resume
        _S.SKIPPED: frozenset(),
    },
)


@dataclass(frozen=True, slots=True)
class Step:
    seq: int
    name: str
    state: StepState
    started_at: datetime
    finished_at: datetime | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an operation failed, as recorded: the error's class name, the exit code the
    error contract gives it (a deliberate HavenError its own; anything else is a bug,
    INTERNAL) and its message. Plain data, so that a durable step may carry it."""

    error_type: str
    exit_code: ExitCode
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        code = exc.exit_code if isinstance(exc, HavenError) else ExitCode.INTERNAL
        return cls(type(exc).__name__, code, f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True, slots=True)
class Operation:
    id: str
    kind: OperationKind
    group: str
    state: OperationState
    created_at: datetime
    finished_at: datetime | None = None
    params: dict[str, str] = field(default_factory=dict)
    result: dict[str, str] = field(default_factory=dict)
    error: str = ""
    steps: tuple[Step, ...] = ()
    error_type: str = ""  # class name of the error that failed it ("" unless FAILED)
    exit_code: ExitCode | None = None  # that error's exit code (None unless FAILED)
