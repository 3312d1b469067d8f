"""Every route of the OpenAPI document, fuzzed (schemathesis, bounded examples) with an
admin's and a member's real Keystone token: no answer is a 500, and every answer matches
the schema the document gives for its status (errors included: one error shape)."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.api import app_for, tenant_home
from tests.support.identity_lab import identity_lab

pytestmark = pytest.mark.keystone
EXAMPLES = 12  # per route and run: bounded, ~30 routes


def test_no_route_answers_500_or_off_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ks = identity_lab()
    alpha, beta = ks.projects["dr-alpha"], ks.projects["dr-beta"]
    tokens = [ks.token("admin"), ks.token("alpha-member")]
    with tenant_home(tmp_path, monkeypatch, alpha, beta):
        schema = schemathesis.openapi.from_asgi(
            "/v1/openapi.json", app_for(ks.auth_url, ks.password)
        )
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 25
        statuses: list[int] = []

        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: schemathesis.Case) -> None:
                for token in tokens:
                    response = case.call(headers={"X-Auth-Token": token})
                    statuses.append(response.status_code)
                    case.validate_response(
                        response, checks=[not_a_server_error, response_schema_conformance]
                    )

            fuzz()
        assert len(statuses) >= 2 * len(operations)
        assert any(200 <= s < 300 for s in statuses) and 422 in statuses  # past the guards
