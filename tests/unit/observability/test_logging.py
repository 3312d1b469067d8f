from __future__ import annotations

import io
import json
import logging

import pytest

from haven.domain.errors import ConflictError
from haven.observability.logging import configure, redact, register_secret, route


@pytest.fixture
def captured() -> io.StringIO:
    stream = io.StringIO()
    configure(level="DEBUG", fmt="json", stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(x) for x in stream.getvalue().splitlines()]


def test_registered_secret_never_reaches_the_log(captured: io.StringIO) -> None:
    register_secret("hunter2-passphrase")
    log = logging.getLogger("haven.test")
    log.info(
        "opening repository with %s",
        "hunter2-passphrase",
        extra={"haven_group": "shop", "haven_detail": "key hunter2-passphrase"},
    )
    try:
        raise RuntimeError("bad passphrase hunter2-passphrase")
    except RuntimeError:
        log.exception("failed")
    text = captured.getvalue()
    assert "hunter2-passphrase" not in text
    first, second = lines(captured)
    assert first["msg"] == "opening repository with ***"
    assert first["group"] == "shop" and first["detail"] == "key ***"
    assert "bad passphrase ***" in str(second["exc"])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("password=abc123 user=x", "password=*** user=x"),
        ('{"os_password": "s3cr3t!", "user": "u"}', '{"os_password": "***", "user": "u"}'),
        ("X-Auth-Token: gAAAAABk", "X-Auth-Token: ***"),
        ("postgresql://haven:pw99@db:5432/x", "postgresql://haven:***@db:5432/x"),
        ("Authorization: Bearer eyJhbGci", "Authorization: Bearer ***"),
        ("rpo=5m freeze_window=0.4s", "rpo=5m freeze_window=0.4s"),
    ],
)
def test_credential_patterns_are_redacted(raw: str, expected: str) -> None:
    assert redact(raw) == expected


def test_text_format_appends_fields() -> None:
    stream = io.StringIO()
    configure(level="INFO", fmt="text", stream=stream)
    logging.getLogger("haven.engine").info("point committed", extra={"haven_point": "rp-1"})
    logging.getLogger("haven.engine").debug("not shown at INFO")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("INFO haven.engine: point committed point=rp-1")


def test_a_library_logger_is_routed_through_havens_handler(captured: io.StringIO) -> None:
    lib = logging.getLogger("somelib")
    own = io.StringIO()
    lib.addHandler(logging.StreamHandler(own))  # what DBOS does on every DBOS(config)
    lib.propagate = False
    register_secret("lib-secret-value")
    try:
        route("somelib")
        lib.warning("connecting with lib-secret-value")
        assert own.getvalue() == ""  # its own handler is gone
        (line,) = lines(captured)
        assert line["logger"] == "somelib" and line["msg"] == "connecting with ***"
    finally:
        lib.propagate = True


def test_deliberate_failures_log_one_line_bugs_keep_their_traceback(
    captured: io.StringIO,
) -> None:
    log = logging.getLogger("haven.test")
    try:
        raise ConflictError("group shop is suspended")
    except ConflictError:
        log.exception("workflow failed")
    try:
        raise KeyError("surprise")
    except KeyError:
        log.exception("workflow failed")
    deliberate, bug = lines(captured)
    assert deliberate["exc"] == "ConflictError: group shop is suspended"
    assert "Traceback" in str(bug["exc"]) and "KeyError: 'surprise'" in str(bug["exc"])


def test_without_a_stream_the_handler_writes_to_the_stderr_of_the_moment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(level="INFO", fmt="json")
    logging.getLogger("haven.test").info("first")
    first = capsys.readouterr().err  # capsys swaps sys.stderr between reads
    logging.getLogger("haven.test").info("second")
    second = capsys.readouterr().err
    assert json.loads(first)["msg"] == "first" and json.loads(second)["msg"] == "second"
