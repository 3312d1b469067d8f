"""Every route of the OpenAPI document, fuzzed (schemathesis, bounded examples) with an
admin's and a member's real Keystone token: no answer is a 500, and every answer matches
the schema the document gives for its status (errors included: one error shape)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.api import app_for, tenant_home
from tests.support.identity_lab import identity_lab

pytestmark = pytest.mark.keystone


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    ks = identity_lab()
    alpha, beta = ks.projects["dr-alpha"], ks.projects["dr-beta"]
    with pytest.MonkeyPatch.context() as mp, tenant_home(tmp_path_factory.mktemp("fuzz"), mp,
                                                          alpha, beta):  # fmt: skip
        app = app_for(ks.auth_url, ks.password)
        app.state.fuzz_tokens = {u: ks.token(u) for u in ("admin", "alpha-member")}
        yield schemathesis.openapi.from_asgi("/v1/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_route_answers_500_or_off_schema(case: schemathesis.Case) -> None:
    tokens = case.operation.schema.app.state.fuzz_tokens
    for user in ("admin", "alpha-member"):
        response = case.call(headers={"X-Auth-Token": tokens[user]})
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
