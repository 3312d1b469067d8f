"""Opening the catalog database and keeping its schema at the newest migration.

URL: ``$HAVEN_CATALOG_URL`` if set (e.g. ``postgresql+psycopg://user@host/db``), else
SQLite at ``$HAVEN_HOME/catalog.db`` (``HAVEN_HOME`` defaults to
``~/.local/share/haven``). Opening runs pending Alembic migrations.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from haven.catalog.errors import CatalogError

MIGRATIONS = Path(__file__).parent / "migrations"


def haven_home() -> Path:
    return Path(os.environ.get("HAVEN_HOME") or Path.home() / ".local/share/haven")


def repository_state_dir() -> Path:
    """Where this host remembers the newest head of each repository it used (the data
    mover's rollback detection): one place for the CLI and the engine."""
    return haven_home() / "repositories"


def catalog_url() -> str:
    return os.environ.get("HAVEN_CATALOG_URL") or f"sqlite:///{haven_home() / 'catalog.db'}"


def redact_url(url: str) -> str:
    """The URL with any password replaced, for display."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable catalog url>"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def open_engine(url: str | None = None) -> Engine:
    url = url or catalog_url()
    try:
        parsed = make_url(url)
    except Exception:
        raise CatalogError(f"catalog URL {redact_url(url)!r} is not a database URL") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    upgrade(engine)
    return engine


def upgrade(engine: Engine) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except Exception as exc:  # connection refused, permissions, ...
        if isinstance(exc, CatalogError):
            raise
        raise CatalogError(
            f"cannot open the catalog at {redact_url(str(engine.url))}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        ) from None
