"""The HTTP API of PRODUCT.md: every endpoint's success and error statuses."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from tasks.models import Assignment, Campaign, CampaignMembership, Task, Volunteer
from tests.factories import CampaignFactory, TaskFactory, UserFactory, grant
from verification.models import Answer

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign() -> Campaign:
    campaign = CampaignFactory(slug="darfur", min_answers=2, max_answers=3)
    for _ in range(3):
        TaskFactory(campaign=campaign)
    return campaign


def next_task(client: Client, slug: str = "darfur"):
    return client.post(f"/api/v1/campaigns/{slug}/next-task", content_type="application/json")


def answer(client: Client, task_id: int, value="intact", client_id=None, **extra):
    body = {"answer": {"damage": value}, "client_id": str(client_id or uuid.uuid4()), **extra}
    return client.post(f"/api/v1/tasks/{task_id}/answers", body, content_type="application/json")


def test_campaign_list_shows_counts(campaign, client):
    response = client.get("/api/v1/campaigns/")
    assert response.status_code == 200
    row = next(r for r in response.json() if r["slug"] == "darfur")
    assert row == {
        "slug": "darfur",
        "title": campaign.title,
        "description": "",
        "kind": "imagery",
        "status": "live",
        "task_count": 3,
        "retired_count": 0,
        "answer_count": 0,
    }


def test_draft_campaigns_are_hidden_from_the_public(client):
    CampaignFactory(slug="secret", status=Campaign.Status.DRAFT)
    assert "secret" not in [r["slug"] for r in client.get("/api/v1/campaigns/").json()]


def test_first_next_task_creates_an_anonymous_volunteer_with_a_session(campaign, client):
    response = next_task(client)
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"task", "question_set", "lease_expires_at"}
    assert body["task"]["bbox"] == [23.0, 13.0, 23.01, 13.01]
    assert body["question_set"]["primary"] == "damage"
    assert "sessionid" in response.cookies
    assert client.session["volunteer"]


def test_reloading_returns_the_same_leased_task(campaign, client):
    first = next_task(client).json()["task"]["id"]
    assert next_task(client).json()["task"]["id"] == first


def test_next_task_for_unknown_campaign_is_404(client):
    assert next_task(client, "nope").status_code == 404


def test_next_task_on_a_paused_campaign_is_409(campaign, client):
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)
    assert next_task(client).status_code == 409


def test_answer_is_201_then_200_when_the_client_id_repeats(campaign, client):
    task_id = next_task(client).json()["task"]["id"]
    client_id = uuid.uuid4()
    first = answer(client, task_id, client_id=client_id)
    assert first.status_code == 201
    again = answer(client, task_id, client_id=client_id)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Answer.objects.filter(task_id=task_id).count() == 1


def test_answer_with_next_leases_the_following_task_in_the_same_response(campaign, client):
    """One request per task: the answer is recorded and the next task leased, as next-task would."""
    first = next_task(client).json()["task"]["id"]
    client_id = uuid.uuid4()
    response = answer(client, first, client_id=client_id, next=True)
    assert response.status_code == 201
    following = response.json()["next"]
    assert set(following) >= {"task", "question_set", "lease_expires_at", "progress"}
    assert following["task"]["id"] != first
    assert following["progress"]["answered_today"] == 1
    assert Assignment.objects.get(task_id=following["task"]["id"]).state == Assignment.State.LEASED
    # next-task now returns the same lease, and a repeat of the answer returns it too (a retry after a
    # dropped connection must not leave the volunteer without the task it was given).
    assert next_task(client).json()["task"]["id"] == following["task"]["id"]
    again = answer(client, first, client_id=client_id, next=True)
    assert again.status_code == 200
    assert again.json()["next"]["task"]["id"] == following["task"]["id"]
    # Without the flag the body is unchanged.
    assert "next" not in answer(client, following["task"]["id"]).json()


def test_answer_with_next_is_null_when_nothing_is_left(campaign, client):
    task_id = next_task(client).json()["task"]["id"]
    seen = []
    for _ in range(3):  # the campaign's three tasks, one request each
        seen.append(task_id)
        response = answer(client, task_id, next=True)
        assert response.status_code == 201
        following = response.json()["next"]
        task_id = following and following["task"]["id"]
    assert following is None
    assert sorted(seen) == sorted(Task.objects.filter(campaign=campaign).values_list("pk", flat=True))
    assert next_task(client).status_code == 204


def test_answer_with_next_gives_a_blocked_volunteer_nothing_more(campaign, client):
    task_id = next_task(client).json()["task"]["id"]
    Volunteer.objects.filter(public_id=client.session["volunteer"]).update(is_blocked=True)
    response = answer(client, task_id, next=True)
    assert response.status_code == 201
    assert response.json()["next"] is None
    assert Answer.objects.filter(task_id=task_id).count() == 1
    assert not Assignment.objects.filter(state=Assignment.State.LEASED).exists()


def test_second_answer_with_another_client_id_is_409(campaign, client):
    task_id = next_task(client).json()["task"]["id"]
    assert answer(client, task_id).status_code == 201
    response = answer(client, task_id, "destroyed")
    assert response.status_code == 409
    assert Answer.objects.get(task_id=task_id).label == "intact"


def test_invalid_answer_is_400_with_a_field_message(campaign, client):
    task_id = next_task(client).json()["task"]["id"]
    response = answer(client, task_id, "flattened")
    assert response.status_code == 400
    assert "damage" in response.json()["errors"]
    assert not Answer.objects.exists()


def test_malformed_body_is_400(campaign, client):
    task_id = next_task(client).json()["task"]["id"]
    response = client.post(
        f"/api/v1/tasks/{task_id}/answers", {"answer": "x"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert set(response.json()["errors"]) >= {"answer", "client_id"}


def test_answer_without_a_volunteer_session_is_403(campaign, client):
    task = Task.objects.filter(campaign=campaign).first()
    assert answer(client, task.pk).status_code == 403


def test_answer_to_unknown_task_is_404(campaign, client):
    next_task(client)
    assert answer(client, 999_999).status_code == 404


def test_204_when_nothing_is_left_for_the_volunteer(campaign, client):
    for _ in range(3):
        task_id = next_task(client).json()["task"]["id"]
        assert answer(client, task_id).status_code == 201
    assert next_task(client).status_code == 204


def test_never_the_same_task_twice(campaign, client):
    seen = []
    while (response := next_task(client)).status_code == 200:
        task_id = response.json()["task"]["id"]
        assert task_id not in seen
        seen.append(task_id)
        answer(client, task_id)
    assert len(seen) == 3


def test_forged_cross_site_answer_is_refused(campaign):
    browser = Client(enforce_csrf_checks=True)
    task_id = next_task(browser).json()["task"]["id"]
    forged = answer(browser, task_id)
    assert forged.status_code == 403
    assert not Answer.objects.exists()
    token = browser.cookies["csrftoken"].value
    ok = browser.post(
        f"/api/v1/tasks/{task_id}/answers",
        {"answer": {"damage": "intact"}, "client_id": str(uuid.uuid4())},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert ok.status_code == 201


def test_task_detail_hides_consensus_from_volunteers(campaign, client):
    task = Task.objects.filter(campaign=campaign).first()
    body = client.get(f"/api/v1/tasks/{task.pk}").json()
    assert body["id"] == task.pk and "consensus" not in body


def test_task_detail_shows_consensus_to_researchers(campaign, client):
    researcher = UserFactory()
    grant(campaign, researcher, CampaignMembership.Role.VIEWER)
    task = Task.objects.filter(campaign=campaign).first()
    client.force_login(researcher)
    body = client.get(f"/api/v1/tasks/{task.pk}").json()
    assert "consensus" in body and body["status"] == "open"


def test_task_detail_of_unknown_task_is_404(client):
    assert client.get("/api/v1/tasks/424242").status_code == 404


def test_consensus_endpoint_for_researchers(campaign):
    volunteers = [Client() for _ in range(2)]
    task_ids = set()
    for volunteer in volunteers:
        task_id = next_task(volunteer).json()["task"]["id"]
        task_ids.add(task_id)
    researcher = UserFactory()
    grant(campaign, researcher, CampaignMembership.Role.OWNER)
    client = Client()
    client.force_login(researcher)
    rows = client.get("/api/v1/campaigns/darfur/consensus").json()
    assert len(rows) == 3
    assert set(rows[0]) == {"task_id", "label", "confidence", "agreement", "n_answers", "status"}


def test_consensus_endpoint_refuses_anonymous_and_outsiders(campaign, client):
    assert client.get("/api/v1/campaigns/darfur/consensus").status_code == 403
    client.force_login(UserFactory())
    assert client.get("/api/v1/campaigns/darfur/consensus").status_code == 403


def test_unanimous_answers_retire_a_task(campaign):
    task_ids = []
    for _ in range(2):
        volunteer = Client()
        response = next_task(volunteer)
        task_id = response.json()["task"]["id"]
        task_ids.append(task_id)
        assert answer(volunteer, task_id, "destroyed").status_code == 201
    assert task_ids[0] == task_ids[1], "the task closest to retirement is served first"
    task = Task.objects.get(pk=task_ids[0])
    assert task.consensus.label == "destroyed"
    assert task.answer_count == 2


def test_openapi_schema_lists_every_endpoint(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    text = response.content.decode()
    for path in ("/api/v1/campaigns/", "next-task", "/answers", "/consensus", "/api/v1/tasks/{task_id}"):
        assert path in text
