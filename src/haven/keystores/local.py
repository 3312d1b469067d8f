"""The local key store: one file per project under a private directory.

Layout (directory 0700, files 0600, whatever the umask):
    <dir>/<project>.key      "haven-project-key-v1:<base64 of 32 bytes>\n"
    <dir>/<project>.revoked  the same file after ``revoke`` (a tombstone: the key is never
                             read again, and ``create`` refuses to replace it)

Keys are created by an explicit admin action (``create``, ``haven keys create``), never on
first protect: a missing key then always means "not created" or "removed", both refused
(exit 7), instead of a fresh key silently taking the place of a revoked one.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from haven.domain.errors import ConflictError, KeyRevoked, KeyUnavailable
from haven.keystores.files import private_dir

KEY_LEN = 32
PREFIX = "haven-project-key-v1:"
MAX_FILE = 256


class LocalKeyStore:
    """Implements the engine's ``KeyStore`` role with files in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _key(self, project: str) -> Path:
        return self.directory / f"{project}.key"

    def _tombstone(self, project: str) -> Path:
        return self.directory / f"{project}.revoked"

    def reference(self, project: str) -> str:
        return f"local key {self._key(project)}"

    def project_key(self, project: str) -> bytes:
        ref = self.reference(project)
        if self._tombstone(project).exists():
            raise KeyRevoked(project, ref, "revoked on this host (haven keys revoke)")
        try:
            fd = os.open(self._key(project), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise KeyUnavailable(
                project, ref, "no such key (removed, or never created: haven keys create)"
            ) from None
        except OSError as exc:
            raise KeyUnavailable(project, ref, f"cannot be read ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_mode & 0o077:
                raise KeyUnavailable(
                    project, ref, f"mode {st.st_mode & 0o777:o} lets others read it (chmod 600)"
                )
            raw = f.read(MAX_FILE + 1)
        return _decode(raw, project, ref)

    def create(self, project: str) -> str:
        """Make the project's key (32 random bytes); the reference. A key that exists or
        was revoked is never replaced (ConflictError, exit 4)."""
        private_dir(self.directory)
        if self._tombstone(project).exists():
            raise ConflictError(
                f"the key of project {project} was revoked; a new key cannot read its data "
                f"(remove {self._tombstone(project)} by hand to start the project afresh)"
            )
        text = (PREFIX + base64.b64encode(os.urandom(KEY_LEN)).decode() + "\n").encode()
        try:
            fd = os.open(self._key(project), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConflictError(
                f"project {project} has a key already ({self._key(project)})"
            ) from None
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return self.reference(project)

    def revoke(self, project: str) -> str:
        """Withdraw the project's key: it is kept aside as a tombstone and never read
        again; protect and restore of the project's groups fail with exit 7."""
        key = self._key(project)
        if not key.exists():
            if self._tombstone(project).exists():
                return self.reference(project)
            raise KeyUnavailable(project, self.reference(project), "no such key")
        os.replace(key, self._tombstone(project))
        return self.reference(project)


def _decode(raw: bytes, project: str, ref: str) -> bytes:
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    if len(raw) > MAX_FILE or not text.startswith(PREFIX):
        raise KeyUnavailable(project, ref, "not a Haven project key file")
    try:
        key = base64.b64decode(text[len(PREFIX) :], validate=True)
    except ValueError:
        key = b""
    if len(key) != KEY_LEN:
        raise KeyUnavailable(project, ref, "malformed Haven project key file")
    return key
