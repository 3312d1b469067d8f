"""Keys and authenticated encryption for repository objects.

Contracts:
- The master key is 32 random bytes. It never leaves the process unwrapped except as a
  key file the operator chose to create.
- Subkeys are derived with BLAKE3 ``derive_key`` and a fixed per-purpose context, so a
  compromise of one purpose's key says nothing about another's:
  ``id`` (keyed BLAKE3 chunk ids), ``data`` (AES-256-GCM of chunks) and ``meta``
  (AES-256-GCM of indexes, manifests, heads, locks). These subkeys are bound to the
  repository id as well (format v2): two repositories opened with the same key file
  still cannot read, or be fed, each other's objects. Only ``config`` (which holds the
  repository id) is sealed under the unbound meta key.
- The scrypt cost of a key envelope is read from the envelope, so it is bounded before
  any work: a crafted envelope cannot make Haven allocate gigabytes or spin for hours.
- Every sealed object is ``nonce(12) || ciphertext || tag(16)`` with a random 96-bit
  nonce. The associated data binds the object to its purpose, the format version and
  (for chunks) the chunk id, so a blob cannot be swapped for another one undetected.
- The key envelope (``keys/<name>``) is the only plaintext object: a scrypt-wrapped copy
  of the master key. A wrong passphrase fails the envelope's GCM tag -> :class:`WrongKey`.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from haven.datamover.errors import CorruptObject, InvalidArgument, KeyEnvelopeRefused, WrongKey

FORMAT_VERSION = 2
NONCE_LEN = 12
TAG_LEN = 16
OVERHEAD = NONCE_LEN + TAG_LEN
KEY_LEN = 32

_CTX = "haven repository v2 2026 subkey "

# Bounds on an envelope's scrypt cost (read from the envelope, so possibly crafted).
# The default (2^15, 8, 1) uses 32 MiB and ~0.1 s; the bounds allow 32x stronger
# settings and refuse anything that would need more than 1 GiB or ~4 s of work.
MAX_SCRYPT_MEMORY = 1 << 30  # 128 * r * N bytes
MAX_SCRYPT_WORK = 1 << 25  # p * r * N (the default is 2^18)
MAX_ENVELOPE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt cost. Defaults take ~0.1 s and 32 MiB; tests may lower ``log_n``."""

    log_n: int = 15
    r: int = 8
    p: int = 1

    def problem(self) -> str | None:
        """Why these parameters are refused, or None if they are within bounds."""
        ints = (self.log_n, self.r, self.p)
        if not all(type(v) is int for v in ints):
            return "scrypt parameters must be integers"
        if not (1 <= self.log_n <= 24 and 1 <= self.r <= 64 and 1 <= self.p <= 64):
            return "scrypt parameters out of range (log_n 1-24, r 1-64, p 1-64)"
        n = 1 << self.log_n
        if 128 * self.r * n > MAX_SCRYPT_MEMORY:
            return (
                f"scrypt would need {128 * self.r * n >> 20} MiB (limit {MAX_SCRYPT_MEMORY >> 20})"
            )
        if self.p * self.r * n > MAX_SCRYPT_WORK:
            return f"scrypt work p*r*N = {self.p * self.r * n} is above the limit {MAX_SCRYPT_WORK}"
        return None


def derive_subkey(master: bytes, purpose: str, repo_id: str = "") -> bytes:
    """The subkey for ``purpose``; bound to ``repo_id`` unless it is empty."""
    hasher = blake3.blake3(derive_key_context=_CTX + purpose)
    hasher.update(master)
    if repo_id:
        hasher.update(b"\0repository " + repo_id.encode())
    return hasher.digest(KEY_LEN)


def key_check(master: bytes) -> bytes:
    """A public value that tells a wrong key from a damaged ``config`` (object
    ``keycheck``): a keyed hash of a constant, which reveals nothing of the key."""
    return blake3.blake3(b"haven key check", key=derive_subkey(master, "key-check")).digest()


class KeyRing:
    """The per-repository subkeys and the primitives that use them. Thread-safe:
    AESGCM and keyed BLAKE3 objects are created per call or are immutable.
    ``repo_id`` binds every subkey to one repository (empty: the unbound ring that
    only opens ``config``)."""

    def __init__(self, master: bytes, repo_id: str = "") -> None:
        if len(master) != KEY_LEN:
            raise InvalidArgument("key", "master key must be 32 bytes")
        self.repo_id = repo_id
        self.id_key = derive_subkey(master, "chunk-id", repo_id)
        self._data = AESGCM(derive_subkey(master, "data", repo_id))
        self._meta = AESGCM(derive_subkey(master, "meta", repo_id))

    def chunk_id(self, data: bytes | bytearray | memoryview) -> bytes:
        """Keyed BLAKE3 of a chunk's plaintext (32 bytes). Releases the GIL on large input."""
        return blake3.blake3(data, key=self.id_key).digest()

    def id_hasher(self) -> blake3.blake3:
        return blake3.blake3(key=self.id_key)

    def seal_data_parts(
        self, data: bytes | bytearray | memoryview, ad: bytes
    ) -> tuple[bytes, bytes]:
        """(nonce, ciphertext || tag) of ``data`` under a fresh random nonce."""
        nonce = os.urandom(NONCE_LEN)
        return nonce, self._data.encrypt(nonce, data, ad)

    def seal_data_into(
        self, nonce: bytes, data: bytes | bytearray | memoryview, ad: bytes, out: memoryview
    ) -> None:
        """``ciphertext || tag`` of ``data`` written into ``out`` (exactly
        ``len(data) + TAG_LEN`` bytes) instead of a new object; ``nonce`` must be fresh
        random bytes."""
        self._data.encrypt_into(nonce, data, ad, out)

    def open_data(self, blob: bytes | memoryview, ad: bytes, where: str) -> bytes:
        return _open(self._data, blob, ad, where)

    def open_data_into(
        self, blob: bytes | memoryview, ad: bytes, out: memoryview, where: str
    ) -> int:
        """:meth:`open_data` into ``out`` (at least ``len(blob) - OVERHEAD`` bytes);
        returns the plaintext length. On failure ``out`` holds garbage: callers must not
        use it."""
        if len(blob) < OVERHEAD:
            raise CorruptObject(where, "too short")
        mv = memoryview(blob)
        n = len(mv) - OVERHEAD
        try:
            self._data.decrypt_into(mv[:NONCE_LEN], mv[NONCE_LEN:], ad, out[:n])
        except InvalidTag:
            raise CorruptObject(where, "authentication tag mismatch") from None
        return n

    def seal_meta(self, data: bytes, ad: bytes) -> bytes:
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._meta.encrypt(nonce, data, ad)

    def open_meta(self, blob: bytes | memoryview, ad: bytes, where: str) -> bytes:
        return _open(self._meta, blob, ad, where)


def _open(aead: AESGCM, blob: bytes | memoryview, ad: bytes, where: str) -> bytes:
    if len(blob) < OVERHEAD:
        raise CorruptObject(where, "too short")
    mv = memoryview(blob)
    try:
        return aead.decrypt(mv[:NONCE_LEN], mv[NONCE_LEN:], ad)
    except InvalidTag:
        raise CorruptObject(where, "authentication tag mismatch") from None


def new_master_key() -> bytes:
    return os.urandom(KEY_LEN)


_ENVELOPE_AD = b"haven-key-envelope-v1"


def _kek(passphrase: bytes, salt: bytes, params: ScryptParams) -> bytes:
    kdf = Scrypt(salt=salt, length=KEY_LEN, n=1 << params.log_n, r=params.r, p=params.p)
    return kdf.derive(passphrase)


def wrap_master_key(master: bytes, passphrase: bytes, params: ScryptParams) -> bytes:
    """The plaintext key envelope (JSON). Contains no secret in the clear."""
    problem = params.problem()
    if problem:
        raise InvalidArgument("scrypt", problem)
    salt = os.urandom(16)
    nonce = os.urandom(NONCE_LEN)
    wrapped = AESGCM(_kek(passphrase, salt, params)).encrypt(nonce, master, _ENVELOPE_AD)
    doc: dict[str, object] = {
        "version": FORMAT_VERSION,
        "kdf": "scrypt",
        "log_n": params.log_n,
        "r": params.r,
        "p": params.p,
        "salt": base64.b64encode(salt).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "wrapped": base64.b64encode(wrapped).decode(),
    }
    doc["check"] = _envelope_check(doc)
    return json.dumps(doc, sort_keys=True).encode()


def _envelope_check(doc: dict[str, object]) -> str:
    """An unkeyed hash of the envelope's fields: tells a damaged envelope (exit 6) from a
    wrong passphrase (exit 7). It guards against accidents, not attackers (who could
    only make the passphrase fail, which they can do by deleting the envelope anyway)."""
    fields = {k: v for k, v in doc.items() if k != "check"}
    return blake3.blake3(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def unwrap_master_key(envelope: bytes, passphrase: bytes, where: str = "keys/") -> bytes:
    """The master key in ``envelope``. Raises :class:`CorruptObject` for an envelope that
    does not parse, :class:`KeyEnvelopeRefused` (exit 7) for one whose scrypt cost is
    beyond the bounds (checked before any work), :class:`WrongKey` for a wrong passphrase."""
    if len(envelope) > MAX_ENVELOPE_BYTES:
        raise CorruptObject(
            where, f"key envelope is {len(envelope)} bytes (at most {MAX_ENVELOPE_BYTES})"
        )
    try:
        doc = json.loads(envelope)
        if not isinstance(doc, dict):
            raise TypeError("not a JSON object")
        params = ScryptParams(doc["log_n"], doc["r"], doc["p"])
        salt = base64.b64decode(doc["salt"], validate=True)
        nonce = base64.b64decode(doc["nonce"], validate=True)
        wrapped = base64.b64decode(doc["wrapped"], validate=True)
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CorruptObject(where, f"unreadable key envelope ({type(exc).__name__})") from None
    if doc.get("check") != _envelope_check(doc):
        raise CorruptObject(where, "key envelope is damaged (its check value does not match)")
    if doc.get("kdf") != "scrypt":
        raise CorruptObject(where, "unknown key derivation function")
    problem = params.problem()
    if problem:
        raise KeyEnvelopeRefused(f"{where}: key envelope refused: {problem}")
    if not (8 <= len(salt) <= 64 and len(nonce) == NONCE_LEN and len(wrapped) == KEY_LEN + TAG_LEN):
        raise CorruptObject(where, "key envelope fields have the wrong length")
    try:
        return AESGCM(_kek(passphrase, salt, params)).decrypt(nonce, wrapped, _ENVELOPE_AD)
    except InvalidTag:
        raise WrongKey("wrong repository passphrase") from None


KEYFILE_PREFIX = "haven-repository-key-v1:"


def encode_key_file(master: bytes) -> str:
    return KEYFILE_PREFIX + base64.b64encode(master).decode() + "\n"


def decode_key_file(content: str | bytes) -> bytes:
    """The master key in a key file's content (text or raw bytes, as read)."""
    if len(content) > 1024:
        raise WrongKey("not a Haven repository key file (too large)")
    if isinstance(content, bytes):
        try:
            content = content.decode("ascii")
        except UnicodeDecodeError:
            raise WrongKey("not a Haven repository key file (binary content)") from None
    text = content.strip()
    if not text.startswith(KEYFILE_PREFIX):
        raise WrongKey("not a Haven repository key file")
    try:
        master = base64.b64decode(text[len(KEYFILE_PREFIX) :], validate=True)
    except ValueError:
        raise WrongKey("malformed Haven repository key file") from None
    if len(master) != KEY_LEN:
        raise WrongKey("malformed Haven repository key file")
    return master
