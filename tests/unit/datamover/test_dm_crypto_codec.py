from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haven.datamover.codec import Codec, decode_chunk, encode_chunk
from haven.datamover.crypto import (
    KeyRing,
    ScryptParams,
    decode_key_file,
    encode_key_file,
    unwrap_master_key,
    wrap_master_key,
)
from haven.datamover.errors import CorruptObject, WrongKey
from haven.domain.errors import IntegrityError, SecurityError

KEYS = KeyRing(b"k" * 32)


def test_subkeys_are_distinct_and_per_repository() -> None:
    a, b = KeyRing(b"a" * 32), KeyRing(b"b" * 32)
    assert a.id_key != b.id_key
    assert a.chunk_id(b"x") != b.chunk_id(b"x")
    assert a.id_key not in (b"a" * 32,)


@pytest.mark.parametrize(
    "data",
    [os.urandom(65536), b"abc" * 30000, bytes(1000), b"x"],
    ids=["rand", "text", "zero", "1"],
)
def test_chunk_roundtrip(data: bytes) -> None:
    cid = KEYS.chunk_id(data)
    blob = b"".join(encode_chunk(KEYS, cid, memoryview(data), 1))
    assert decode_chunk(KEYS, cid, blob, "t") == data
    if data.startswith(b"abc"):
        assert blob[0] == Codec.ZSTD and len(blob) < len(data) // 10
    if len(data) == 65536 and blob[0] == Codec.RAW:
        assert len(blob) == len(data) + 29  # codec + nonce + tag: raw when zstd doesn't pay


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=5000), st.integers(min_value=0, max_value=10**6))
def test_any_flipped_bit_is_detected(data: bytes, where: int) -> None:
    cid = KEYS.chunk_id(data)
    blob = bytearray(b"".join(encode_chunk(KEYS, cid, memoryview(data), 1)))
    pos = where % len(blob)
    blob[pos] ^= 0x01
    with pytest.raises(IntegrityError):
        decode_chunk(KEYS, cid, bytes(blob), "t")


def test_blob_bound_to_chunk_id() -> None:
    a, b = b"a" * 100, b"b" * 100
    blob = b"".join(encode_chunk(KEYS, KEYS.chunk_id(a), memoryview(a), 1))
    with pytest.raises(CorruptObject):
        decode_chunk(KEYS, KEYS.chunk_id(b), blob, "t")


def test_other_key_cannot_decode() -> None:
    data = b"secret" * 10
    blob = b"".join(encode_chunk(KEYS, KEYS.chunk_id(data), memoryview(data), 1))
    with pytest.raises(CorruptObject):
        decode_chunk(KeyRing(b"z" * 32), KEYS.chunk_id(data), blob, "t")


def test_envelope_wrong_passphrase_is_security_error() -> None:
    master = os.urandom(32)
    env = wrap_master_key(master, b"right", ScryptParams(log_n=10))
    assert unwrap_master_key(env, b"right") == master
    assert master not in env and b"right" not in env
    with pytest.raises(WrongKey) as info:
        unwrap_master_key(env, b"wrong")
    assert isinstance(info.value, SecurityError)
    assert "passphrase" in str(info.value)


def test_key_file_roundtrip_and_garbage() -> None:
    master = os.urandom(32)
    assert decode_key_file(encode_key_file(master)) == master
    for bad in ("", "nonsense", "haven-repository-key-v1:AAAA"):
        with pytest.raises(WrongKey):
            decode_key_file(bad)
