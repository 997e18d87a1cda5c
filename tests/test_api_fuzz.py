"""Schemathesis drives every API operation from the OpenAPI schema: no server error, no response off-schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from config.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    """Schemathesis calls the WSGI app directly; like Django's test client, keep the request signals from
    closing the connection that holds the test's transaction."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


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
