#!/usr/bin/env python3
"""How the REST API holds under N concurrent clients on this machine: p50/p99 latency and
errors for a list (GET /v1/groups), the status (GET /v1/status) and operation submits
(POST /v1/operations: one 202 per burst, the rest 409 while the group is busy; both are
answers, not errors).

    .venv/bin/python bench/api_load.py [--clients 50] [--requests 20]

Needs the identity lab (``lab/openstack/up.sh --identity``; ``$HAVEN_OS_IDENTITY`` or
/var/lib/haven-dev/openstack/identity.json). Builds a private HAVEN_HOME under
bench/work/api-load with the engine tests' two-site fake lab (group ``shop`` in project
dr-alpha), starts ``haven api`` as an operator would (a separate uvicorn process, one
worker), takes dr-alpha's member token and runs the three scenarios one after the other,
each with ``--clients`` concurrent clients sending ``--requests`` requests. Errors are
5xx answers and transport failures. Writes ``bench/results/<date>-api-load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.unit.engine.lab import make_lab  # noqa: E402  (the engine tests' fake lab)

WORK = ROOT / "bench" / "work" / "api-load"


def identity() -> dict[str, Any]:
    path = Path(os.environ.get("HAVEN_OS_IDENTITY", "/var/lib/haven-dev/openstack/identity.json"))
    info: dict[str, Any] = json.loads(path.read_text())
    return info


def token(info: dict[str, Any], user: str, project: str) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": user,
                        "domain": {"name": "Default"},
                        "password": info["password"],
                    }
                },
            },
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
        }
    }
    r = httpx.post(f"{info['auth_url']}/auth/tokens", json=body, timeout=30)
    r.raise_for_status()
    return r.headers["X-Subject-Token"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(info: dict[str, Any], env: dict[str, str]) -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    lab = make_lab(WORK / "lab")
    data = yaml.safe_load(lab.spec.read_text())
    data["groups"][0]["project"] = info["projects"]["dr-alpha"]
    spec = WORK / "spec.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    subprocess.run(
        [sys.executable, "-m", "haven", "apply", "-f", str(spec)],
        env=env,
        check=True,
        capture_output=True,
    )
    # the project's data key (docs/keys.md), so that the submitted protects can run
    subprocess.run(
        [sys.executable, "-m", "haven", "keys", "create", "offsite", info["projects"]["dr-alpha"]],
        env=env,
        check=True,
        capture_output=True,
    )


async def scenario(
    base: str, tok: str, method: str, path: str, body: Any, clients: int, requests: int
) -> dict[str, Any]:
    latencies: list[float] = []
    codes: dict[str, int] = {}
    errors = 0

    async def client() -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            for _ in range(requests):
                start = time.perf_counter()
                try:
                    r = await c.request(method, path, json=body, headers={"X-Auth-Token": tok})
                except httpx.TransportError:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - start) * 1000)
                codes[str(r.status_code)] = codes.get(str(r.status_code), 0) + 1
                errors += r.status_code >= 500

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "method": method,
        "path": path,
        "clients": clients,
        "requests": len(latencies),
        "p50_ms": round(q[49], 1),
        "p99_ms": round(q[98], 1),
        "errors": errors,
        "status_codes": codes,
        "throughput_rps": round(len(latencies) / wall, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=20)
    args = ap.parse_args()
    info = identity()
    WORK.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env.update(HAVEN_HOME=str(WORK / "home"), HAVEN_API_AUTH_URL=info["auth_url"])
    prepare(info, env)
    secret = WORK / "service-password"
    secret.write_text(info["password"] + "\n")
    env["HAVEN_API_PASSWORD_FILE"] = str(secret)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "haven", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # readiness: the port answers (or the server died)
            if server.poll() is not None:
                raise SystemExit(f"haven api exited with {server.returncode}")
            try:
                if httpx.get(f"{base}/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("haven api did not answer in 60 s") from None
                time.sleep(0.2)
        tok = token(info, "alpha-member", "dr-alpha")
        # warm-up: the token's validation is cached (TTL 300 s); the scenarios measure the
        # API, not 50 simultaneous first validations by Keystone
        httpx.get(f"{base}/v1/groups", headers={"X-Auth-Token": tok}, timeout=60).raise_for_status()
        results = [
            asyncio.run(
                scenario(base, tok, "GET", "/v1/groups", None, args.clients, args.requests)
            ),
            asyncio.run(
                scenario(base, tok, "GET", "/v1/status", None, args.clients, args.requests)
            ),
            asyncio.run(
                scenario(
                    base,
                    tok,
                    "POST",
                    "/v1/operations",
                    {"kind": "protect", "group": "shop"},
                    args.clients,
                    args.requests,
                )
            ),
        ]
    finally:
        server.terminate()
        server.wait(timeout=30)
    cpus = os.cpu_count()
    out = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": cpus,
        "token_cache_ttl": 300,
        "server": "haven api (uvicorn, 1 process)",
        "results": results,
    }
    dest = ROOT / "bench" / "results" / f"{dt.date.today().isoformat()}-api-load.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    for r in results:
        print(
            f"{r['method']:4} {r['path']:16} p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms"
            f"  {r['throughput_rps']:6.1f} req/s  errors {r['errors']}  {r['status_codes']}"
        )
    print(f"written {dest.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
