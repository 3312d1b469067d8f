"""Opening the catalog database and keeping its schema at the newest migration.

URL: ``$HAVEN_CATALOG_URL`` if set (e.g. ``postgresql+psycopg://user@host/db``), else
SQLite at ``$HAVEN_HOME/catalog.db`` (``HAVEN_HOME`` defaults to
``~/.local/share/haven``). Opening runs pending Alembic migrations.

Contracts:
- Only SQLite and PostgreSQL (psycopg) catalogs are supported; any other URL is refused
  as a bad setting (exit 2) before a driver is loaded.
- Everything Haven creates on disk for its state is private to its owner whatever the
  umask: directories 0700 (each level it creates, never an existing one), SQLite files
  0600 -- created so before SQLite opens them (SQLite gives its -wal/-shm files the
  database file's mode), and tightened to 0600 if an older version left them readable
  to others.
- A catalog at a schema revision this code does not know (written by a newer Haven)
  is refused before anything is migrated, so the newer version can still use it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

from haven.catalog.errors import CatalogError, CatalogFormatError
from haven.domain.errors import HavenError, ValidationError

MIGRATIONS = Path(__file__).parent / "migrations"
SUPPORTED_DRIVERS = frozenset(
    {"sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}
)
_URL_HELP = (
    "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB "
    "(or unset HAVEN_CATALOG_URL for $HAVEN_HOME/catalog.db)"
)
_SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


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


def private_dir(path: Path, setting: str = "HAVEN_HOME") -> Path:
    """Make ``path`` a directory, creating each missing level with mode 0700.

    Existing directories are left as they are (HAVEN_HOME may be a shared place the
    operator chose). Raises ValidationError naming ``setting`` when ``path`` or one of its
    parents is not a directory or cannot be created."""
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        if probe.exists() or probe.is_symlink():
            raise ValidationError(
                setting, f"{probe} is not a directory; point {setting} at a directory"
            )
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for level in reversed(missing):
        try:
            os.mkdir(level, 0o700)
            os.chmod(level, 0o700)  # the umask may have taken bits away (umask 0777)
        except FileExistsError:
            if not level.is_dir():
                raise ValidationError(
                    setting, f"{level} is not a directory; point {setting} at a directory"
                ) from None
        except OSError as exc:
            raise ValidationError(
                setting, f"cannot create {level}: {exc.strerror}; point {setting} elsewhere"
            ) from None
    return path


def private_sqlite_file(path: Path, setting: str = "HAVEN_HOME") -> None:
    """Create the SQLite database file ``path`` with mode 0600 (its directory 0700) before
    SQLite does, and tighten it and its -wal/-shm/-journal files if others may read them."""
    private_dir(path.parent, setting)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ValidationError(setting, f"cannot open {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValidationError(setting, f"{path} is not a regular file")
        if stat.S_IMODE(info.st_mode) != 0o600 and info.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in _SQLITE_SUFFIXES[1:]:
        side = path.with_name(path.name + suffix)
        try:
            info = os.lstat(side)
        except FileNotFoundError:
            continue
        mine = info.st_uid == os.geteuid()
        if mine and stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(side, 0o600)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def parse_catalog_url(url: str, setting: str) -> URL:
    """``url`` parsed, if it names a supported database; ValidationError otherwise. The
    message shows the URL with its password hidden."""
    try:
        parsed = make_url(url)
    except Exception:  # ArgumentError, ValueError: not a URL at all
        raise ValidationError(
            setting, f"{redact_url(url)!r} is not a database URL; {_URL_HELP}"
        ) from None
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise ValidationError(
            setting,
            f"{parsed.drivername!r} databases are not supported for the catalog "
            f"(SQLite and PostgreSQL are); {_URL_HELP}",
        )
    return parsed


def open_engine(url: str | None = None) -> Engine:
    explicit = url or os.environ.get("HAVEN_CATALOG_URL")
    setting = "HAVEN_CATALOG_URL" if explicit else "HAVEN_HOME"
    url = explicit or catalog_url()
    parsed = parse_catalog_url(url, setting)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database not in (None, "", ":memory:"):
        private_sqlite_file(Path(parsed.database), setting)
    try:
        engine = create_engine(parsed, future=True)
    except ImportError as exc:  # the database driver is not installed
        raise ValidationError(
            setting, f"the driver for {parsed.drivername!r} is not installed ({exc.name})"
        ) from None
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    upgrade(engine)
    return engine


def upgrade(engine: Engine) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            _refuse_unknown_revision(conn, ScriptDirectory.from_config(cfg), engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except HavenError:
        raise
    except Exception as exc:  # connection refused, permissions, ...
        raise CatalogError(
            f"cannot open the catalog at {redact_url(str(engine.url))}: "
            f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
        ) from None


def _refuse_unknown_revision(conn: Any, script: ScriptDirectory, engine: Engine) -> None:
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = [r for r in MigrationContext.configure(conn).get_current_heads() if r not in known]
    if unknown:
        raise CatalogFormatError(
            f"the catalog at {redact_url(str(engine.url))} is at schema revision "
            f"{unknown[0][:40]!r}, which this version of Haven does not know: it was written "
            "by a newer version of Haven. Upgrade Haven (or point HAVEN_CATALOG_URL or "
            "HAVEN_HOME at another catalog); nothing was changed"
        )
