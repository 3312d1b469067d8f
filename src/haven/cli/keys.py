"""``haven keys create|revoke|register``: the projects' data keys of a repository
(docs/keys.md). Prints references, never key material."""

from __future__ import annotations

import typer

from haven.cli.output import JSON_OPTION, console, escape, guarded, print_json

app = typer.Typer(help="The projects' data keys of a repository.", no_args_is_help=True)

REPOSITORY = typer.Argument(..., help="The repository (its name in the spec).")
PROJECT = typer.Argument(..., help="The Keystone project id whose key it is.")


def _show(action: str, repository: str, project: str, ref: str, as_json: bool) -> None:
    if as_json:
        print_json({"repository": repository, "project": project, "key": ref, "action": action})
    else:
        console.print(f"{action}: project {escape(project)} in {escape(repository)}: {escape(ref)}")


@app.command("create")
@guarded
def create(repository: str = REPOSITORY, project: str = PROJECT,
           as_json: bool = JSON_OPTION) -> None:  # fmt: skip
    """Make PROJECT's data key in a local key store (before its first protect)."""
    from haven.engine import api

    _show("created", repository, project, api.create_project_key(repository, project), as_json)


@app.command("revoke")
@guarded
def revoke(repository: str = REPOSITORY, project: str = PROJECT,
           as_json: bool = JSON_OPTION) -> None:  # fmt: skip
    """Withdraw PROJECT's local key: its groups' protect and restore fail (exit 7)."""
    from haven.engine import api

    _show("revoked", repository, project, api.revoke_project_key(repository, project), as_json)


@app.command("register")
@guarded
def register(
    repository: str = REPOSITORY,
    project: str = PROJECT,
    ref: str = typer.Argument(..., help="The Barbican secret: its href or uuid."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Record which Barbican secret holds PROJECT's key (the tenant grants Haven's user
    read access to it through the secret's ACL)."""
    from haven.engine import api

    _show("registered", repository, project, api.register_project_key(repository, project, ref),
          as_json)  # fmt: skip
