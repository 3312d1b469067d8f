"""``haven config show``: the effective configuration, secrets redacted."""

from __future__ import annotations

import os
from typing import Any

import typer

from haven.catalog.db import catalog_url, haven_home, redact_url
from haven.catalog.store import Catalog
from haven.cli.output import JSON_OPTION, console, escape, guarded, print_json
from haven.domain.secrets import REDACTED, SecretRef, SecretSource

app = typer.Typer(help="Show Haven's effective configuration.", no_args_is_help=True)


def _secret_status(ref: SecretRef) -> dict[str, Any]:
    if ref.source is SecretSource.ENV:
        present = bool(os.environ.get(ref.name))
    else:
        present = os.path.isfile(ref.name)
    return {
        "source": ref.source.value,
        "name": ref.name,
        "value": REDACTED if present else None,
        "present": present,
    }


def effective_config() -> dict[str, Any]:
    settings = {
        "home": {
            "value": str(haven_home()),
            "source": "env HAVEN_HOME" if os.environ.get("HAVEN_HOME") else "default",
        },
        "catalog_url": {
            "value": redact_url(catalog_url()),
            "source": "env HAVEN_CATALOG_URL" if os.environ.get("HAVEN_CATALOG_URL") else "default",
        },
        "log_level": {
            "value": os.environ.get("HAVEN_LOG_LEVEL", "INFO"),
            "source": "env HAVEN_LOG_LEVEL" if os.environ.get("HAVEN_LOG_LEVEL") else "default",
        },
    }
    catalog = Catalog.open()
    try:
        resources = catalog.resources()
    finally:
        catalog.close()
    secrets: dict[str, Any] = {}
    for repo in resources.repositories:
        refs = {"password": repo.password} if repo.password else {}
        refs.update(repo.credentials)
        secrets[f"repositories.{repo.name}"] = {k: _secret_status(v) for k, v in refs.items()}
        if repo.key_file:
            secrets[f"repositories.{repo.name}"]["key_file"] = _secret_status(
                SecretRef(SecretSource.FILE, repo.key_file)
            )
    counts = {
        kind: len(items)
        for kind, items in (
            ("sites", resources.sites),
            ("repositories", resources.repositories),
            ("policies", resources.policies),
            ("groups", resources.groups),
            ("plans", resources.plans),
        )
    }
    return {"settings": settings, "resources": counts, "secrets": secrets}


@app.command("show")
@guarded
def show(as_json: bool = JSON_OPTION) -> None:
    """Print the effective configuration (secret values are never shown)."""
    cfg = effective_config()
    if as_json:
        print_json(cfg)
        return
    for key, item in cfg["settings"].items():
        value = escape(str(item["value"]))
        console.print(f"{key}: {value}  [dim]({item['source']})[/]", highlight=False)
    console.print("resources: " + ", ".join(f"{v} {k}" for k, v in cfg["resources"].items()))
    for owner, refs in cfg["secrets"].items():
        for field, st in refs.items():
            shown = st["value"] if st["present"] else "[red]missing[/]"
            console.print(
                f"{owner}.{field}: {shown}  [dim]({st['source']} {escape(st['name'])})[/]",
                highlight=False,
            )
