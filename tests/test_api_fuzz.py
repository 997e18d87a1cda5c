"""Schemathesis drives every API operation from the OpenAPI schema: no server error, no response off-schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from config.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def seeded(db: None) -> None:
    from tests.factories import CampaignFactory, TaskFactory

    campaign = CampaignFactory(slug="fuzz")
    for _ in range(3):
        TaskFactory(campaign=campaign)


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_errors_and_keeps_to_its_schema(case, seeded) -> None:
    case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])
