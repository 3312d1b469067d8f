"""Who may do what: oslo.policy rules with defaults in code, in today's OpenStack
secure-RBAC style (reader < member < manager < admin; Keystone's implied roles give an
admin the member and reader roles too, the checks below do not rely on it).

- reader reads its project's groups, plans, points, operations and status, and the
  published sites, repositories and policies (the protection levels it picks from);
- member manages groups and plans, suspends and resumes groups and runs protect, drill
  (test-failover) and cleanup;
- manager (or admin) runs failover and failback;
- admin manages sites, repositories and policies and sees every project.

Another project's objects never reach a policy check: the engine answers 404 for them
first (``engine/scope.py``). A deployment overrides any rule with a policy file (YAML,
the ``HAVEN_API_POLICY_FILE`` setting); ``oslopolicy-sample-generator --namespace haven``
prints these defaults (entry points in pyproject.toml).
"""

from __future__ import annotations

import os

from oslo_config import cfg
from oslo_policy import policy

from haven.api.auth import Caller
from haven.domain.errors import ForbiddenError, ValidationError

READER = "role:reader or role:member or role:manager or role:admin"
MEMBER = "role:member or role:manager or role:admin"
MANAGER = "role:manager or role:admin"
ADMIN = "role:admin"

_BASE = [
    policy.RuleDefault("haven_reader", READER, "Any role in the caller's project."),
    policy.RuleDefault("haven_member", MEMBER, "Member, manager or admin."),
    policy.RuleDefault("haven_manager", MANAGER, "Manager or admin."),
    policy.RuleDefault("haven_admin", ADMIN, "The cloud's admin."),
]


def _op(name: str, rule: str, method: str, path: str, what: str) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault(
        name=f"haven:{name}",
        check_str=f"rule:{rule}",
        description=what,
        operations=[{"method": method, "path": path}],
        scope_types=["project"],
    )


def _crud(
    kind: str, plural: str, read: str, write: str, deletable: bool = False
) -> list[policy.DocumentedRuleDefault]:
    base, one = f"/v1/{plural}", f"/v1/{plural}/{{name}}"
    delete = [_op(f"{kind}:delete", write, "DELETE", one, f"Delete a {kind}.")]
    return [
        _op(f"{kind}:list", read, "GET", base, f"List {plural}."),
        _op(f"{kind}:get", read, "GET", one, f"Show a {kind}."),
        _op(f"{kind}:create", write, "POST", base, f"Create a {kind}."),
        _op(f"{kind}:update", write, "PUT", one, f"Replace a {kind}."),
        *(delete if deletable else []),
    ]


_RULES = [
    *_crud("site", "sites", "haven_reader", "haven_admin"),
    *_crud("repository", "repositories", "haven_reader", "haven_admin"),
    *_crud("policy", "policies", "haven_reader", "haven_admin"),
    *_crud("group", "groups", "haven_reader", "haven_member", deletable=True),
    *_crud("plan", "plans", "haven_reader", "haven_member", deletable=True),
    _op(
        "group:suspend",
        "haven_member",
        "POST",
        "/v1/groups/{name}/suspend",
        "Suspend a group's protection (no points are taken; its RPO may grow).",
    ),
    _op(
        "group:resume",
        "haven_member",
        "POST",
        "/v1/groups/{name}/resume",
        "Resume a suspended group's protection.",
    ),
    _op("point:list", "haven_reader", "GET", "/v1/points", "List recovery points."),
    _op("point:get", "haven_reader", "GET", "/v1/points/{id}", "Show a recovery point."),
    _op("point:delete", "haven_manager", "DELETE", "/v1/points/{id}", "Delete a recovery point."),
    _op("operation:list", "haven_reader", "GET", "/v1/operations", "List operations."),
    _op("operation:get", "haven_reader", "GET", "/v1/operations/{id}", "Show an operation."),
    _op("operation:protect", "haven_member", "POST", "/v1/operations", "Take a point now."),
    _op("operation:test-failover", "haven_member", "POST", "/v1/operations", "Run a drill."),
    _op("operation:cleanup", "haven_member", "POST", "/v1/operations", "Clean up a drill."),
    _op("operation:failover", "haven_manager", "POST", "/v1/operations", "Fail over."),
    _op("operation:failback", "haven_manager", "POST", "/v1/operations", "Fail back."),
    _op("status:get", "haven_reader", "GET", "/v1/status", "RPO compliance per group."),
    _op("usage:get", "haven_reader", "GET", "/v1/usage", "Usage of the caller's project."),
    _op("quota:get", "haven_reader", "GET", "/v1/quotas/{project}", "The project's quotas."),
    _op("quota:list", "haven_admin", "GET", "/v1/quotas", "Every project's quotas."),
    _op("quota:update", "haven_admin", "PUT", "/v1/quotas/{project}", "Set a project's quotas."),
    _op(
        "key:register",
        "haven_manager",
        "PUT",
        "/v1/keys/{repository}",
        "Register the Barbican secret holding the project's data key (replacing a key makes "
        "data under the old one unreadable: manager).",
    ),
    _op(
        "apply",
        "haven_member",
        "POST",
        "/v1/apply",
        "Apply a spec (groups and plans only, unless haven:apply:operator).",
    ),
    _op(
        "apply:operator",
        "haven_admin",
        "POST",
        "/v1/apply",
        "Apply sites, repositories and policies, and groups of any project.",
    ),
    _op(
        "all_projects",
        "haven_admin",
        "GET",
        "/v1/*",
        "See and act on every project's groups, plans, points and operations.",
    ),
]


def list_rules() -> list[policy.RuleDefault]:
    """The ``oslo.policy.policies`` entry point (namespace ``haven``)."""
    return [*_BASE, *_RULES]


def get_enforcer() -> policy.Enforcer:
    """The ``oslo.policy.enforcer`` entry point (what oslopolicy-checker and the policy
    upgrade tools load)."""
    conf = cfg.ConfigOpts()
    conf([], project="haven")
    return make_enforcer(None, conf)


def make_enforcer(policy_file: str | None, conf: cfg.ConfigOpts | None = None) -> policy.Enforcer:
    if conf is None:
        conf = cfg.ConfigOpts()
        conf([], project="haven")
    enforcer = policy.Enforcer(conf, policy_file=policy_file, use_conf=True)
    enforcer.register_defaults(list_rules())
    enforcer.load_rules()
    return enforcer


class Authorizer:
    def __init__(self, policy_file: str | None = None) -> None:
        if policy_file is not None and not os.path.isfile(policy_file):
            raise ValidationError("HAVEN_API_POLICY_FILE", f"no policy file {policy_file!r}")
        self.enforcer = make_enforcer(policy_file)

    def allowed(self, rule: str, caller: Caller) -> bool:
        creds = caller.credentials()
        return bool(self.enforcer.enforce(rule, {"project_id": caller.project_id}, creds))

    def authorize(self, rule: str, caller: Caller) -> None:
        if not self.allowed(rule, caller):
            raise ForbiddenError(f"the policy does not allow {rule} for your roles")
