"""Faults: Redis down, a lost database connection."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import OperationalError
from django.test import Client

from tests.factories import CampaignFactory, TaskFactory
from verification.models import Answer

pytestmark = pytest.mark.django_db

DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def redis_down(settings: Any) -> None:
    settings.REDIS_URL = DOWN
    settings.CACHES = {
        "default": {
            "BACKEND": "config.cache.ResilientRedisCache",
            "LOCATION": DOWN,
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    settings.CORROBORATE_RATE_LIMITS = True  # the throttles use the (unreachable) cache


def test_answers_are_still_accepted_when_redis_is_down(redis_down: None) -> None:
    campaign = CampaignFactory(slug="offline-broker")
    TaskFactory(campaign=campaign)
    client = Client()
    response = client.post("/api/v1/campaigns/offline-broker/next-task")
    assert response.status_code == 200
    task_id = response.json()["task"]["id"]
    answer = client.post(
        f"/api/v1/tasks/{task_id}/answers",
        {"answer": {"damage": "intact"}, "client_id": str(uuid.uuid4())},
        content_type="application/json",
    )
    assert answer.status_code == 201
    assert Answer.objects.filter(task_id=task_id).count() == 1


def test_health_endpoint_says_the_broker_is_down(redis_down: None, client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["broker"].startswith("down") and body["database"] == "ok" and body["status"] == "degraded"


def test_health_endpoint_is_ok_when_everything_is_up(client: Client) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["storage"] == "ok"


def test_a_lost_database_connection_gives_a_retryable_503() -> None:
    from django.db import connection

    campaign = CampaignFactory(slug="db-down")
    TaskFactory(campaign=campaign)

    def lost(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    with connection.execute_wrapper(lost):
        response = Client(raise_request_exception=False).post("/api/v1/campaigns/db-down/next-task")
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json()["retryable"] is True
