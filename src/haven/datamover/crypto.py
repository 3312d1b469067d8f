"""Keys and authenticated encryption for repository objects.

Contracts:
- The master key is 32 random bytes. It never leaves the process unwrapped except as a
  key file the operator chose to create.
- Subkeys are derived with BLAKE3 ``derive_key`` and a fixed per-purpose context, so a
  compromise of one purpose's key says nothing about another's:
  ``id`` (keyed BLAKE3 chunk ids), ``data`` (AES-256-GCM of chunks) and ``meta``
  (AES-256-GCM of config, indexes, manifests, locks).
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

from haven.datamover.errors import CorruptObject, InvalidArgument, WrongKey

FORMAT_VERSION = 1
NONCE_LEN = 12
TAG_LEN = 16
OVERHEAD = NONCE_LEN + TAG_LEN
KEY_LEN = 32

_CTX = "haven repository v1 2026 subkey "


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt cost. Defaults take ~0.1 s and 32 MiB; tests may lower ``log_n``."""

    log_n: int = 15
    r: int = 8
    p: int = 1


def derive_subkey(master: bytes, purpose: str) -> bytes:
    hasher = blake3.blake3(derive_key_context=_CTX + purpose)
    hasher.update(master)
    return hasher.digest(KEY_LEN)


class KeyRing:
    """The per-repository subkeys and the primitives that use them. Thread-safe:
    AESGCM and keyed BLAKE3 objects are created per call or are immutable."""

    def __init__(self, master: bytes) -> None:
        if len(master) != KEY_LEN:
            raise InvalidArgument("key", "master key must be 32 bytes")
        self.id_key = derive_subkey(master, "chunk-id")
        self._data = AESGCM(derive_subkey(master, "data"))
        self._meta = AESGCM(derive_subkey(master, "meta"))

    def chunk_id(self, data: bytes | bytearray | memoryview) -> bytes:
        """Keyed BLAKE3 of a chunk's plaintext (32 bytes). Releases the GIL on large input."""
        return blake3.blake3(data, key=self.id_key).digest()

    def id_hasher(self) -> blake3.blake3:
        return blake3.blake3(key=self.id_key)

    def seal_data(self, data: bytes | bytearray | memoryview, ad: bytes) -> bytes:
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._data.encrypt(nonce, data, ad)

    def seal_data_parts(
        self, data: bytes | bytearray | memoryview, ad: bytes
    ) -> tuple[bytes, bytes]:
        """(nonce, ciphertext || tag): :meth:`seal_data` without concatenating."""
        nonce = os.urandom(NONCE_LEN)
        return nonce, self._data.encrypt(nonce, data, ad)

    def seal_data_into(
        self, nonce: bytes, data: bytes | bytearray | memoryview, ad: bytes, out: memoryview
    ) -> None:
        """``ciphertext || tag`` of ``data`` written into ``out`` (exactly
        ``len(data) + TAG_LEN`` bytes) instead of a new object; ``nonce`` must be fresh
        random bytes (:meth:`seal_data` draws its own)."""
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
    salt = os.urandom(16)
    nonce = os.urandom(NONCE_LEN)
    wrapped = AESGCM(_kek(passphrase, salt, params)).encrypt(nonce, master, _ENVELOPE_AD)
    doc = {
        "version": FORMAT_VERSION,
        "kdf": "scrypt",
        "log_n": params.log_n,
        "r": params.r,
        "p": params.p,
        "salt": base64.b64encode(salt).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "wrapped": base64.b64encode(wrapped).decode(),
    }
    return json.dumps(doc, sort_keys=True).encode()


def unwrap_master_key(envelope: bytes, passphrase: bytes) -> bytes:
    try:
        doc = json.loads(envelope)
        params = ScryptParams(int(doc["log_n"]), int(doc["r"]), int(doc["p"]))
        salt = base64.b64decode(doc["salt"])
        nonce = base64.b64decode(doc["nonce"])
        wrapped = base64.b64decode(doc["wrapped"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptObject("keys/", f"unreadable key envelope ({exc})") from None
    if doc.get("kdf") != "scrypt":
        raise CorruptObject("keys/", f"unknown kdf {doc.get('kdf')!r}")
    try:
        return AESGCM(_kek(passphrase, salt, params)).decrypt(nonce, wrapped, _ENVELOPE_AD)
    except InvalidTag:
        raise WrongKey("wrong repository passphrase") from None


KEYFILE_PREFIX = "haven-repository-key-v1:"


def encode_key_file(master: bytes) -> str:
    return KEYFILE_PREFIX + base64.b64encode(master).decode() + "\n"


def decode_key_file(text: str) -> bytes:
    text = text.strip()
    if not text.startswith(KEYFILE_PREFIX):
        raise WrongKey("not a Haven repository key file")
    try:
        master = base64.b64decode(text[len(KEYFILE_PREFIX) :], validate=True)
    except ValueError:
        raise WrongKey("malformed Haven repository key file") from None
    if len(master) != KEY_LEN:
        raise WrongKey("malformed Haven repository key file")
    return master
