"""Property-based fuzzing of every parser of repository objects.

An object comes from storage, which Haven does not trust: whatever bytes a parser is
given, it must either return a value or raise a HavenError (CorruptObject,
UnsupportedFormat, WrongKey, KeyEnvelopeRefused) — never another exception, never
unbounded work. Random bytes fail at the authentication tag, so the parsers behind it
are fuzzed with *validly sealed* random plaintexts as well (what a holder of the key
could write). Runs in CI; EXAMPLES per target.
"""

from __future__ import annotations

import base64
import contextlib
import json
import struct
import time
from typing import Any

import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haven.datamover.backends import MemoryBackend
from haven.datamover.codec import decode_chunk
from haven.datamover.crypto import (
    FORMAT_VERSION,
    KeyRing,
    decode_key_file,
    new_master_key,
    unwrap_master_key,
)
from haven.datamover.heads import open_head
from haven.datamover.locks import read_locks
from haven.datamover.manifest import open_manifest
from haven.datamover.packs import open_index, open_trailer
from haven.datamover.repository import _config_from
from haven.domain.errors import HavenError

EXAMPLES = 300
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
KEYS = KeyRing(new_master_key(), "0123456789abcdef0123456789abcdef")
MID = "20261129T000000.000000Z-0123456789abcdef"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _only_haven_errors(fn: Any, *args: Any) -> None:
    with contextlib.suppress(HavenError):
        fn(*args)


def _sealz(plain: bytes, ad: bytes) -> bytes:
    """``plain`` compressed and sealed as the repository does it."""
    return KEYS.seal_meta(zstandard.ZstdCompressor().compress(plain), ad)


def _manifest_plain(header: Any, tail: bytes) -> bytes:
    return json.dumps(header).encode() + b"\n" + tail


headers = st.fixed_dictionaries(
    {
        "version": st.sampled_from([FORMAT_VERSION, 1, "2", None]),
        "volume": st.text(max_size=8) | st.integers(),
        "point_id": st.text(max_size=8),
        "created": st.sampled_from(["2026-11-29T00:00:00+00:00", "yesterday", ""]) | st.integers(),
        "size": st.integers(-(2**70), 2**70),
        "chunk_size": st.sampled_from([65536, 1 << 20, 3, 0, -1, 2**40]) | st.integers(),
        "checksum": st.text(max_size=4),
        "zero_runs": st.lists(st.lists(st.integers(-5, 2**40), max_size=3), max_size=4)
        | json_values,
    },
    optional={"labels": json_values, "parent": json_values},
)


@FUZZ
@given(header=headers, tail=st.binary(max_size=200))
def test_manifest_parser(header: dict[str, Any], tail: bytes) -> None:
    sealed = KEYS.seal_meta(
        zstandard.ZstdCompressor().compress(_manifest_plain(header, tail)), _mad()
    )
    _only_haven_errors(open_manifest, KEYS, MID, sealed)


@FUZZ
@given(plain=st.binary(max_size=400))
def test_manifest_parser_on_raw_plaintext(plain: bytes) -> None:
    sealed = _sealz(plain, _mad())
    _only_haven_errors(open_manifest, KEYS, MID, sealed)
    _only_haven_errors(open_manifest, KEYS, MID, KEYS.seal_meta(plain, _mad()))  # not zstd
    _only_haven_errors(open_manifest, KEYS, MID, plain)  # not even sealed


def test_manifest_claiming_a_huge_size_is_refused_quickly() -> None:
    """A zstd frame that claims terabytes, inside a validly sealed manifest."""
    frame = zstandard.ZstdCompressor(write_content_size=True).compress(b"\0" * (8 << 20))
    started = time.monotonic()
    _only_haven_errors(open_manifest, KEYS, MID, KEYS.seal_meta(frame, _mad()))
    huge = {
        "version": FORMAT_VERSION, "volume": "v", "point_id": "p", "created": "2026-01-01",
        "size": 2**60, "chunk_size": 65536, "checksum": "", "zero_runs": [[0, 2**44]],
    }  # fmt: skip
    sealed = _sealz(_manifest_plain(huge, b""), _mad())
    _only_haven_errors(open_manifest, KEYS, MID, sealed)
    assert time.monotonic() - started < 5


def _mad() -> bytes:
    return b"HVNM" + bytes((FORMAT_VERSION,)) + MID.encode()


PACK_ID = "ab" * 16


@FUZZ
@given(raw=st.binary(max_size=500))
def test_index_and_trailer_parsers(raw: bytes) -> None:
    ad = b"HVNI" + bytes((FORMAT_VERSION,)) + PACK_ID.encode()
    _only_haven_errors(open_index, KEYS, PACK_ID, raw)
    _only_haven_errors(open_index, KEYS, PACK_ID, KEYS.seal_meta(raw, ad))
    _only_haven_errors(open_trailer, KEYS, PACK_ID, raw)
    tad = b"HVNT" + bytes((FORMAT_VERSION,)) + PACK_ID.encode()
    trailer = KEYS.seal_meta(raw, tad)
    pack = b"HVNPACK1" + raw[:50] + trailer + struct.pack("<I", len(trailer))
    _only_haven_errors(open_trailer, KEYS, PACK_ID, pack)


@FUZZ
@given(blob=st.binary(max_size=300), cid=st.binary(min_size=32, max_size=32))
def test_chunk_decoder(blob: bytes, cid: bytes) -> None:
    _only_haven_errors(decode_chunk, KEYS, cid, blob, "data/x")


@FUZZ
@given(doc=json_values, seq=st.integers(0, 2**40))
def test_head_parser(doc: Any, seq: int) -> None:
    ad = b"HVNH" + bytes((FORMAT_VERSION,)) + struct.pack("<Q", seq)
    plain = json.dumps(doc).encode()
    _only_haven_errors(
        open_head, KEYS, seq, KEYS.seal_meta(zstandard.ZstdCompressor().compress(plain), ad)
    )
    rows = {"version": FORMAT_VERSION, "seq": seq, "created": "2026-11-29T00:00:00+00:00",
            "manifests": doc}  # fmt: skip
    plain = json.dumps(rows).encode()
    _only_haven_errors(
        open_head, KEYS, seq, KEYS.seal_meta(zstandard.ZstdCompressor().compress(plain), ad)
    )


@FUZZ
@given(doc=json_values)
def test_config_parser(doc: Any) -> None:
    _only_haven_errors(_config_from, doc)
    if isinstance(doc, dict):
        _only_haven_errors(_config_from, {**doc, "version": FORMAT_VERSION})


envelope_fields = st.fixed_dictionaries(
    {
        "kdf": st.sampled_from(["scrypt", "argon2", 1]),
        "log_n": st.integers(-5, 80) | st.floats() | st.text(max_size=3),
        "r": st.integers(-5, 2**33),
        "p": st.integers(-5, 2**33),
        "salt": st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
        | st.text(max_size=10),
        "nonce": st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode()),
        "wrapped": st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()),
    },
    optional={"check": st.text(max_size=64), "version": json_values},
)


@FUZZ
@given(doc=envelope_fields)
def test_key_envelope_parser_bounds_cost_before_work(doc: dict[str, Any]) -> None:
    from haven.datamover.crypto import _envelope_check

    for candidate in (doc, {**doc, "check": _envelope_check(doc)}):
        started = time.monotonic()
        _only_haven_errors(unwrap_master_key, json.dumps(candidate).encode(), b"passphrase")
        assert time.monotonic() - started < 10, candidate


@FUZZ
@given(raw=st.binary(max_size=2000) | st.text(max_size=200))
def test_key_file_parser(raw: bytes | str) -> None:
    _only_haven_errors(decode_key_file, raw)


@FUZZ
@given(raw=st.binary(max_size=300), doc=json_values)
def test_lock_records(raw: bytes, doc: Any) -> None:
    backend = MemoryBackend()
    lid = "00" * 12
    backend.put(f"locks/{lid}", raw)
    ad = b"HVNL" + bytes((FORMAT_VERSION,)) + lid.encode()
    backend.put(f"locks/{'11' * 12}", KEYS.seal_meta(json.dumps(doc).encode(), ad))
    found = read_locks(backend, KEYS)
    assert len(found) == 2  # each either parsed or reported unreadable, nothing raised
