"""The demo application's spec: three tiers on the KVM lab's two sites."""

from __future__ import annotations

from pathlib import Path

from haven_lab.kvm import LabEnv

SERVERS = ("demo-db", "demo-app", "demo-web")
BUBBLE = "demo-drill"

SPEC = """\
apiVersion: haven/v1
sites:
{sites}repositories:
  - {{name: offsite, url: "{home}/repo", site: site-b, key_file: "{home}/repo.key"}}
policies:
  - name: gold
    rpo: 1m
    interval: 30s
    retention: {{keep_last: 5}}
    consistency: application-or-crash
    freeze_timeout: 5s
    warm_standby: true
groups:
  - name: shop
    source: site-a
    target: site-b
    policy: gold
    repository: offsite
    members:
      - server: demo-db
        hooks:
          pre_freeze: [{{command: "sync", timeout: 10s, on_error: fail}}]
      - server: demo-app
      - server: demo-web
plans:
  - name: shop
    group: shop
    stages:
      - servers: [demo-db]
        gates: [{{type: agent, timeout: 180s}}]
      - servers: [demo-app, demo-web]
        depends_on: [demo-db]
        gates: [{{type: agent, timeout: 180s}}]
    mappings:
      networks: {{app-net: app-net}}
    test_bubble: {{network: {bubble}}}
    checks:
      - {{type: command, server: demo-db, command: [grep, -q, order-2, /data/records]}}
      - {{type: command, server: demo-app, command: [test, -s, /data/records]}}
      - {{type: command, server: demo-web, command: [test, -s, /data/records]}}
"""


def write_spec(home: Path, env: LabEnv) -> Path:
    path = home / "demo.yaml"
    path.write_text(SPEC.format(sites=env.sites_yaml(), home=home, bubble=BUBBLE))
    return path
