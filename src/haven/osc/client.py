"""The Haven REST API over the keystoneauth session osc gives a plugin: the session
adds the user's token; an answer other than 2xx becomes a :class:`DrError` carrying the
API's ``error.message`` (with its field problems), the request id and the API's exit code
(the same codes as the ``haven`` CLI), so a command exits non-zero with one clear line."""

from __future__ import annotations

from typing import Any

from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1.session import Session

SERVICE_TYPE = "disaster-recovery"
EXIT_UNREACHABLE = 5  # the CLI's ExternalError code: something outside Haven failed
EXIT_GENERIC = 1


class DrError(Exception):
    """A request the API refused or could not answer; ``str()`` is the user's message."""

    def __init__(self, message: str, exit_code: int = EXIT_GENERIC) -> None:
        super().__init__(message)
        self.exit_code = exit_code if exit_code > 0 else EXIT_GENERIC


class DrClient:
    def __init__(
        self, session: Session, endpoint: str | None, region: str | None, interface: str
    ) -> None:
        self._session = session
        self._endpoint = endpoint.rstrip("/") if endpoint else None
        self._region = region
        self._interface = interface

    def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        return self._request("GET", path, params=query)

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        return self._request("POST", path, json=body, headers=headers or {})

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._endpoint is None:
            where = f"region {self._region or '(any)'}, interface {self._interface}"
            raise DrError(
                f"no {SERVICE_TYPE!r} endpoint in the Keystone catalog for {where}; "
                "the operator registers Haven's API as that service type "
                "(or set disaster_recovery_endpoint_override in clouds.yaml)",
                EXIT_UNREACHABLE,
            )
        url = f"{self._endpoint}/v1{path}"
        try:
            resp = self._session.request(url, method, raise_exc=False, **kwargs)
        except (ksa_exc.ConnectFailure, ksa_exc.ConnectTimeout, ksa_exc.RequestTimeout) as exc:
            raise DrError(f"cannot reach {url}: {exc}", EXIT_UNREACHABLE) from exc
        if resp.status_code >= 400:
            raise _error(resp)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()


def _error(resp: Any) -> DrError:
    """The API's error document (``{"error": {message, problems?, exit_code,
    request_id}}``); anything else (a proxy's page) is named by its status."""
    rid = resp.headers.get("X-OpenStack-Request-Id")
    try:
        err = resp.json()["error"]
        message = str(err["message"])
    except (ValueError, KeyError, TypeError):
        text = " ".join(resp.text.split())[:200]
        return DrError(f"HTTP {resp.status_code} from the API: {text or '(no body)'}")
    for problem in err.get("problems") or []:
        if isinstance(problem, dict) and problem.get("path") and problem["path"] not in message:
            message += f"; {problem['path']}: {problem.get('message', '')}"
    rid = err.get("request_id") or rid
    suffix = f" (HTTP {resp.status_code}, request {rid})" if rid else f" (HTTP {resp.status_code})"
    code = err.get("exit_code")
    return DrError(message + suffix, code if isinstance(code, int) else EXIT_GENERIC)
