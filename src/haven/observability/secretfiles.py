"""Reading a secret (passphrase, key file) from a file: bounded, text only, never echoed.

- At most ``MAX_SECRET_FILE_BYTES`` (64 KiB) + 1 byte is read, whatever the file is: a
  passphrase or key file is one short line, so anything larger is the wrong file.
- Pipes and character devices are read like files (``--password-file <(pass show x)``
  is how a passphrase is passed without touching the disk); a directory is refused.
- The content must be UTF-8 text. The text is registered with
  :func:`haven.observability.logging.register_secret` before it is returned, so no log
  line can show it; :class:`SecretFileError` carries a reason, never content.
"""

from __future__ import annotations

import os
import stat

from haven.observability.logging import register_secret

MAX_SECRET_FILE_BYTES = 64 * 1024


class SecretFileError(Exception):
    """The file cannot be a secret. ``unreadable``: it could not be read at all (missing,
    permissions, a directory, too large); otherwise it was read and is not text."""

    def __init__(self, reason: str, *, unreadable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreadable = unreadable


def read_secret_file(path: str | os.PathLike[str]) -> str:
    """The text in ``path`` (registered as a secret). Raises SecretFileError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise SecretFileError(f"cannot be read ({exc.strerror})", unreadable=True) from None
    except ValueError:  # a NUL character in the path
        raise SecretFileError(
            "cannot be read (a NUL character in its name)", unreadable=True
        ) from None
    chunks: list[bytes] = []
    total = 0
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise SecretFileError("is a directory, not a file", unreadable=True)
        while total <= MAX_SECRET_FILE_BYTES:
            chunk = os.read(fd, MAX_SECRET_FILE_BYTES + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise SecretFileError(f"cannot be read ({exc.strerror})", unreadable=True) from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise SecretFileError(
            f"is larger than {MAX_SECRET_FILE_BYTES // 1024} KiB: not a passphrase or key "
            "file (those are one short line)",
            unreadable=True,
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretFileError("is not UTF-8 text", unreadable=False) from None
    register_secret(text.strip())
    return text
