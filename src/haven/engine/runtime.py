"""The durable-execution runtime: DBOS configured for Haven.

Contracts:
- The system database is SQLite at ``$HAVEN_HOME/engine.sqlite`` unless
  ``$HAVEN_ENGINE_URL`` is set; when the catalog is on PostgreSQL (``$HAVEN_CATALOG_URL``)
  and no engine URL is given, DBOS uses the same database (its own ``dbos`` schema), so
  several workers on several hosts share one engine state.
- ``APP_VERSION`` is pinned: DBOS only recovers workflows of the same application version,
  and a version that followed the code hash would strand every pending operation after
  an upgrade. Bump it only when a workflow's sequence of steps changes incompatibly.
- DBOS's log records go through Haven's handler (format, redaction), never its own
  console handler (``observability.logging.route``).
- Each process runs as one DBOS *executor*. A CLI command that runs one operation uses
  the executor id ``op-<operation id>``; restarting with the same executor id (``haven
  operations resume ID``) makes DBOS recover exactly that operation's workflow, so two CLI
  processes never pick up each other's live work. ``haven serve`` uses ``serve-<host>``.
- A SQLite system database is private to its owner whatever the umask: the file is
  created 0600 (and its directory 0700) before DBOS opens it; its -wal/-shm files take
  the database file's mode.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from dbos import DBOS, DBOSConfig
from sqlalchemy.engine import make_url

from haven.catalog.db import haven_home, parse_catalog_url, private_sqlite_file
from haven.observability.logging import route

APP_NAME = "haven"
APP_VERSION = "haven-engine-4"

_lock = threading.Lock()
_launched: str | None = None


def engine_url() -> str:
    explicit = os.environ.get("HAVEN_ENGINE_URL")
    if explicit:
        if explicit.startswith("sqlite"):
            database = parse_catalog_url(explicit, "HAVEN_ENGINE_URL").database
            if database and database != ":memory:":
                private_sqlite_file(Path(database), "HAVEN_ENGINE_URL")
        return explicit
    catalog = os.environ.get("HAVEN_CATALOG_URL", "")
    if catalog.startswith("postgresql"):
        return catalog
    path = haven_home() / "engine.sqlite"
    private_sqlite_file(path)
    return f"sqlite:///{path}"


def executor_for(operation_id: str) -> str:
    return f"op-{operation_id}"


def launch(executor_id: str) -> str:
    """Start DBOS once per process (importing the workflow modules registers them) and
    return the executor id in use: a process that is already running keeps its own."""
    global _launched
    with _lock:
        if _launched is not None:
            return _launched
        from haven.engine import workflows  # noqa: F401  (registration side effect)

        url = engine_url()
        if url.startswith("postgresql"):
            # DBOS drives PostgreSQL through psycopg 3, which SQLAlchemy names +psycopg
            url = make_url(url).set(drivername="postgresql+psycopg").render_as_string(False)
        config: DBOSConfig = {
            "name": APP_NAME,
            "system_database_url": url,
            "application_version": APP_VERSION,
            "executor_id": executor_id,
            "log_level": os.environ.get("HAVEN_ENGINE_LOG_LEVEL", "WARNING"),
            "notification_listener_polling_interval_sec": 0.1,
        }
        logging.getLogger("dbos").setLevel(config["log_level"] or "WARNING")
        DBOS(config=config)
        route("dbos")  # DBOS(config) installs its own console handler: Haven's instead
        DBOS.launch()
        route("dbos")
        _launched = executor_id
        return executor_id


def shutdown() -> None:
    global _launched
    with _lock:
        if _launched is None:
            return
        DBOS.destroy(destroy_registry=False)
        _launched = None
        route("dbos")  # whatever DBOS left attached, Haven's handler only


def current() -> str | None:
    """The executor id of this process, if the engine runs."""
    return _launched
