"""AWS Signature V4 (haven.datamover.backends.sigv4) against AWS's published examples:
the four S3 examples of "Signature Calculations for the Authorization Header: Transferring
Payload in a Single Chunk" (GET object with a range, PUT object, GET ?lifecycle, GET list
with an unsorted query) and two vectors of the SigV4 test suite (get-vanilla,
get-vanilla-query-order-key-case), plus one request of the kind the S3 backend sends,
whose signature is derived here step by step from the written-out canonical request."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from haven.datamover.backends.sigv4 import (
    EMPTY_SHA256,
    Credentials,
    canonical_query,
    sign,
    uri_encode,
)

S3_EXAMPLE = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
S3_TIME = datetime(2013, 5, 24, tzinfo=UTC)
S3_HOST = {"Host": "examplebucket.s3.amazonaws.com"}
SUITE = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_TIME = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)


def s3_example(method: str, path: str, query: str, headers: dict[str, str], payload: str) -> str:
    signed = sign(
        method=method,
        canonical_uri=path,
        query=query,
        headers={**S3_HOST, "x-amz-content-sha256": payload, **headers},
        payload_hash=payload,
        credentials=S3_EXAMPLE,
        region="us-east-1",
        service="s3",
        now=S3_TIME,
    )
    return signed.signature


def test_get_object_example_canonical_request_and_signature() -> None:
    signed = sign(
        method="GET",
        canonical_uri="/test.txt",
        query="",
        headers={**S3_HOST, "Range": "bytes=0-9", "x-amz-content-sha256": EMPTY_SHA256},
        payload_hash=EMPTY_SHA256,
        credentials=S3_EXAMPLE,
        region="us-east-1",
        service="s3",
        now=S3_TIME,
    )
    assert signed.canonical_request == (
        "GET\n/test.txt\n\n"
        "host:examplebucket.s3.amazonaws.com\n"
        "range:bytes=0-9\n"
        f"x-amz-content-sha256:{EMPTY_SHA256}\n"
        "x-amz-date:20130524T000000Z\n\n"
        "host;range;x-amz-content-sha256;x-amz-date\n"
        f"{EMPTY_SHA256}"
    )
    assert signed.string_to_sign.endswith(
        "20130524/us-east-1/s3/aws4_request\n"
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    )
    assert signed.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    assert signed.headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert signed.headers["X-Amz-Date"] == "20130524T000000Z"


def test_put_object_example_key_encoded_once() -> None:
    payload = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    path = "/" + uri_encode("test$file.text", keep_slash=True)
    assert path == "/test%24file.text"
    headers = {
        "Date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
    }
    assert s3_example("PUT", path, "", headers, payload) == (
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    )


def test_get_lifecycle_example_parameter_without_value() -> None:
    query = canonical_query([("lifecycle", "")])
    assert query == "lifecycle="
    assert s3_example("GET", "/", query, {}, EMPTY_SHA256) == (
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
    )


def test_list_objects_example_query_sorted() -> None:
    query = canonical_query([("prefix", "J"), ("max-keys", "2")])
    assert query == "max-keys=2&prefix=J"
    assert s3_example("GET", "/", query, {}, EMPTY_SHA256) == (
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )


@pytest.mark.parametrize(
    ("query", "signature"),
    [
        ("", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        (
            canonical_query([("Param2", "value2"), ("Param1", "value1")]),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
    ],
    ids=["get-vanilla", "get-vanilla-query-order-key-case"],
)
def test_sigv4_test_suite(query: str, signature: str) -> None:
    signed = sign(
        method="GET",
        canonical_uri="/",
        query=query,
        headers={"Host": "example.amazonaws.com"},
        payload_hash=EMPTY_SHA256,
        credentials=SUITE,
        region="us-east-1",
        service="service",
        now=SUITE_TIME,
    )
    assert signed.signature == signature
    assert "SignedHeaders=host;x-amz-date," in signed.headers["Authorization"]


def test_a_backend_request_derived_by_hand() -> None:
    """A listing page as S3Backend sends it (port in the host, a base64 continuation token
    that needs percent-encoding, temporary credentials): the canonical request written
    out here, then the key derivation and HMAC done inline, must give the same signature."""
    creds = Credentials("test:tester", "lab-secret", session_token="tok/en+=")
    now = datetime(2024, 2, 29, 23, 59, 58, tzinfo=UTC)
    query = canonical_query(
        [("list-type", "2"), ("prefix", "repo/one/data/"), ("continuation-token", "a+b/c==")]
    )
    assert query == "continuation-token=a%2Bb%2Fc%3D%3D&list-type=2&prefix=repo%2Fone%2Fdata%2F"
    signed = sign(
        method="GET",
        canonical_uri="/haven-bucket",
        query=query,
        headers={"Host": "127.0.0.1:18080", "X-Amz-Content-SHA256": EMPTY_SHA256},
        payload_hash=EMPTY_SHA256,
        credentials=creds,
        region="haven-lab",
        service="s3",
        now=now,
    )
    canonical = (
        "GET\n/haven-bucket\n"
        "continuation-token=a%2Bb%2Fc%3D%3D&list-type=2&prefix=repo%2Fone%2Fdata%2F\n"
        "host:127.0.0.1:18080\n"
        f"x-amz-content-sha256:{EMPTY_SHA256}\n"
        "x-amz-date:20240229T235958Z\n"
        "x-amz-security-token:tok/en+=\n\n"
        "host;x-amz-content-sha256;x-amz-date;x-amz-security-token\n"
        f"{EMPTY_SHA256}"
    )
    assert signed.canonical_request == canonical
    to_sign = (
        "AWS4-HMAC-SHA256\n20240229T235958Z\n20240229/haven-lab/s3/aws4_request\n"
        + hashlib.sha256(canonical.encode()).hexdigest()
    )
    key = b"AWS4lab-secret"
    for part in (b"20240229", b"haven-lab", b"s3", b"aws4_request"):
        key = hmac.new(key, part, hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    assert signed.signature == expected
    assert signed.headers["X-Amz-Security-Token"] == "tok/en+="
    assert signed.headers["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=test:tester/20240229/haven-lab/s3/aws4_request, "
    )


def test_headers_are_trimmed_folded_and_merged() -> None:
    signed = sign(
        method="get",
        canonical_uri="/",
        query="",
        headers={"Host": " h ", "X-Amz-Meta-A": "  two   words ", "x-amz-meta-a": "x"},
        payload_hash=EMPTY_SHA256,
        credentials=SUITE,
        region="r",
        service="s3",
        now=SUITE_TIME,
    )
    lines = signed.canonical_request.split("\n")
    assert lines[0] == "GET"
    assert "host:h" in lines and "x-amz-meta-a:two words,x" in lines


def test_uri_encode() -> None:
    assert uri_encode("a b/c~d_e.f-g") == "a%20b%2Fc~d_e.f-g"
    assert uri_encode("data/ab/x", keep_slash=True) == "data/ab/x"
    assert uri_encode("ñ=+*") == "%C3%B1%3D%2B%2A"


def test_no_secret_in_reprs() -> None:
    creds = Credentials("AKID", "the-secret-key", session_token="the-session-token")
    signed = sign(
        method="GET",
        canonical_uri="/",
        query="",
        headers={"Host": "h"},
        payload_hash=EMPTY_SHA256,
        credentials=creds,
        region="r",
        service="s3",
        now=SUITE_TIME,
    )
    for text in (repr(creds), str(creds), repr(signed)):
        assert "the-secret-key" not in text and "the-session-token" not in text
    assert "AKID" in repr(creds)
