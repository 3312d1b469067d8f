"""The plugin's API client against real HTTP servers (no Keystone: an unauthenticated
keystoneauth session): what the user reads when the answer is not the API's error
document, when nothing listens, and when the catalog has no endpoint."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from keystoneauth1.session import Session

from haven.osc.client import DrClient, DrError
from tests.support.api import closed_port


class _Proxy(BaseHTTPRequestHandler):
    """A proxy in front of the API that fails with an HTML page, or the API's own
    error document for /v1/groups/shop."""

    def do_GET(self) -> None:
        if self.path == "/v1/groups/shop":
            body = (b'{"error": {"type": "ValidationError", "message": "2 problems",'
                    b' "retryable": false, "exit_code": 2, "request_id": "req-1",'
                    b' "problems": [{"path": "limit", "message": "must be >= 1"},'
                    b' {"path": "marker", "message": "bad"}]}}')  # fmt: skip
            self._send(422, "application/json", body)
        else:
            self._send(502, "text/html", b"<html><body>Bad   Gateway</body></html>")

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:  # quiet test output
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_answer_that_is_not_the_apis_error_is_named_by_its_status(proxy: str) -> None:
    client = DrClient(Session(), proxy + "/", "RegionOne", "public")
    with pytest.raises(DrError) as err:
        client.get("/groups")
    assert str(err.value) == "HTTP 502 from the API: <html><body>Bad Gateway</body></html>"
    assert err.value.exit_code == 1


def test_the_apis_error_keeps_its_problems_request_id_and_exit_code(proxy: str) -> None:
    with pytest.raises(DrError) as err:
        DrClient(Session(), proxy, None, "public").get("/groups/shop")
    assert str(err.value) == (
        "2 problems; limit: must be >= 1; marker: bad (HTTP 422, request req-1)"
    )
    assert err.value.exit_code == 2


def test_no_endpoint_and_no_answer_exit_5() -> None:
    with pytest.raises(DrError) as err:
        DrClient(Session(), None, "RegionNowhere", "internal").get("/status")
    assert "no 'disaster-recovery' endpoint" in str(err.value)
    assert "region RegionNowhere, interface internal" in str(err.value)
    assert err.value.exit_code == 5
    down = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(DrError) as err:
        DrClient(Session(), down, None, "public").get("/status")
    assert str(err.value).startswith(f"cannot reach {down}/v1/status") and err.value.exit_code == 5
