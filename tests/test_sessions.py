"""A newcomer's session and volunteer row: one INSERT each, committed without waiting for the disk, and a
session key that is already taken is drawn again (config/sessions.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

import config.sessions
from tasks.models import Volunteer
from tests.factories import CampaignFactory, TaskFactory


def _first_next_task(client: Client, slug: str) -> Any:
    response = client.post(f"/api/v1/campaigns/{slug}/next-task", content_type="application/json")
    assert response.status_code == 200
    return response


@pytest.mark.django_db(transaction=True)
def test_a_newcomers_session_and_volunteer_are_one_insert_each_without_waiting_for_the_disk() -> None:
    campaign = CampaignFactory(gold_share=0)
    TaskFactory(campaign=campaign)
    client = Client()
    with CaptureQueriesContext(connection) as queries:
        _first_next_task(client, campaign.slug)
    statements = [q["sql"] for q in queries.captured_queries]
    on_sessions = [s for s in statements if "django_session" in s]
    on_volunteers = [s for s in statements if s.startswith('INSERT INTO "tasks_volunteer"')]
    # No lookup of the random key before the INSERT, and no BEGIN/COMMIT around it.
    assert len(on_sessions) == 1 and on_sessions[0].startswith('INSERT INTO "django_session"')
    assert len(on_volunteers) == 1
    if connection.vendor == "postgresql":
        for statement in (on_sessions[0], on_volunteers[0]):
            assert "set_config('synchronous_commit', 'off', true)" in statement
    session = Session.objects.get(session_key=client.cookies["sessionid"].value)
    volunteer = Volunteer.objects.get()
    assert session.get_decoded()["volunteer"] == str(volunteer.public_id)
    assert volunteer.is_anonymous and volunteer.created_at is not None
    # The volunteer goes on with the same identity: an answer, then the next task.
    task_id = client.post(
        f"/api/v1/campaigns/{campaign.slug}/next-task", content_type="application/json"
    ).json()["task"]["id"]
    answered = client.post(
        f"/api/v1/tasks/{task_id}/answers",
        {"answer": {"damage": "intact"}, "client_id": str(uuid.uuid4())},
        content_type="application/json",
    )
    assert answered.status_code == 201
    assert Volunteer.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_session_key_already_taken_is_drawn_again_and_the_other_session_is_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    campaign = CampaignFactory(gold_share=0)
    TaskFactory(campaign=campaign)
    first = Client()
    _first_next_task(first, campaign.slug)
    taken = first.cookies["sessionid"].value
    before = Session.objects.get(session_key=taken).session_data
    keys = iter([taken, "z" * 32])
    monkeypatch.setattr(config.sessions, "get_random_string", lambda *args: next(keys))
    second = Client()
    _first_next_task(second, campaign.slug)
    assert second.cookies["sessionid"].value == "z" * 32
    assert Session.objects.get(session_key=taken).session_data == before
    decoded = {s.session_key: s.get_decoded()["volunteer"] for s in Session.objects.all()}
    assert len(decoded) == 2 and len(set(decoded.values())) == 2
