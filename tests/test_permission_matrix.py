"""Access control over every route: each role against every page and API endpoint.

Routes are enumerated from the URL resolver, so a page added later is covered without editing this test.
Invariants: nobody outside a campaign gets a 2xx from any of its researcher routes (reading or writing),
volunteers never see other volunteers' answers or identities, researchers see pseudonyms only, and nothing
answers with a server error.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.apps import apps
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tasks.models import Campaign, CampaignMembership, Job, Task, Volunteer
from tests.factories import CampaignFactory, TaskFactory, UserFactory, grant
from verification.services import answer_submit

pytestmark = pytest.mark.django_db

SECRET_NAME = "alice-private-name"
ROLES = [
    "anonymous visitor",
    "anonymous volunteer",
    "registered volunteer",
    "viewer",
    "reviewer",
    "owner",
    "other researcher",
    "admin",
]
MEMBERS = {"viewer", "reviewer", "owner", "admin"}


def _routes(patterns: list[Any] | None = None, prefix: str = "") -> list[str]:
    found: list[str] = []
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = str(entry.pattern)
        if isinstance(entry, URLResolver):
            found += _routes(entry.url_patterns, prefix + route)
        elif isinstance(entry, URLPattern):
            found.append(prefix + route)
    return found


def _fill(route: str, values: dict[str, Any]) -> str | None:
    if route.startswith("^") or "(?P" in route:
        return None  # regex routes (media) are covered by their own tests
    missing = []

    def value(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in values:
            missing.append(name)
            return ""
        return str(values[name])

    path = re.sub(r"<(?:(\w+):)?(\w+)>", value, route)
    return None if missing else "/" + path


@pytest.fixture
def world() -> dict[str, Any]:
    campaign = CampaignFactory(slug="matrix", min_answers=2, max_answers=4)
    other = CampaignFactory(slug="elsewhere")
    tasks = [TaskFactory(campaign=campaign) for _ in range(3)]
    users = {
        role: UserFactory(username=role.replace(" ", "-"))
        for role in ROLES
        if role not in {"anonymous visitor", "anonymous volunteer"}
    }
    users["admin"].is_superuser = users["admin"].is_staff = True
    users["admin"].save()
    grant(campaign, users["viewer"], CampaignMembership.Role.VIEWER)
    grant(campaign, users["reviewer"], CampaignMembership.Role.REVIEWER)
    grant(campaign, users["owner"], CampaignMembership.Role.OWNER)
    grant(other, users["other researcher"], CampaignMembership.Role.OWNER)
    # A registered volunteer with a telling username answers a task: that name must never leak.
    alice = UserFactory(username=SECRET_NAME)
    volunteer = Volunteer.objects.create(user=alice, is_anonymous=False)
    answer_submit(
        task=tasks[0],
        volunteer=volunteer,
        answer={"damage": "destroyed", "note": "seen"},
        client_id=uuid.uuid4(),
    )
    job = Job.objects.create(campaign=campaign, kind="ingest_imagery", params={})
    values = {
        "slug": campaign.slug,
        "task_id": tasks[0].pk,
        "pk": tasks[0].pk,
        "job_id": job.pk,
        "id": tasks[0].pk,
    }
    return {"campaign": campaign, "tasks": tasks, "users": users, "values": values}


def _client(role: str, world: dict[str, Any]) -> Client:
    client = Client(raise_request_exception=True)
    if role == "anonymous volunteer":
        client.post("/api/v1/campaigns/matrix/next-task")
    elif role != "anonymous visitor":
        client.force_login(world["users"][role])
    return client


def _researcher_routes(world: dict[str, Any]) -> list[str]:
    paths = []
    for route in _routes():
        if route.startswith("researcher/") and "<slug:slug>" in route:
            path = _fill(route, world["values"])
            if path:
                paths.append(path)
    return sorted(set(paths))


def test_the_matrix_covers_the_researcher_workspace(world: dict[str, Any]) -> None:
    assert len(_researcher_routes(world)) >= 1


@pytest.mark.parametrize("role", ROLES)
def test_researcher_routes_of_a_campaign_are_closed_to_outsiders(role: str, world: dict[str, Any]) -> None:
    client = _client(role, world)
    for path in _researcher_routes(world):
        response = client.get(path)
        assert response.status_code < 500, (role, path, response.status_code)
        if role in MEMBERS:
            continue
        assert response.status_code in (302, 401, 403, 404, 405), (role, path, response.status_code)
        if response.status_code == 302:
            assert "/accounts/login/" in response["Location"], (role, path)


@pytest.mark.parametrize("role", [r for r in ROLES if r not in MEMBERS])
def test_outsiders_cannot_change_anything_through_researcher_routes(role: str, world: dict[str, Any]) -> None:
    client = _client(role, world)
    models = [m for m in apps.get_models() if m._meta.app_label in {"tasks", "verification"}]
    before = {m._meta.label: m.objects.count() for m in models}
    statuses = {}
    for path in _researcher_routes(world):
        response = client.post(
            path, {"label": "destroyed", "note": "forged", "name": "forged", "role": "owner"}
        )
        statuses[path] = response.status_code
        assert response.status_code < 500 and not 200 <= response.status_code < 300, (
            role,
            path,
            response.status_code,
        )
    after = {m._meta.label: m.objects.count() for m in models}
    assert after == before, statuses


@pytest.mark.parametrize("role", ROLES)
def test_api_endpoints_by_role(role: str, world: dict[str, Any]) -> None:
    client = _client(role, world)
    task = world["tasks"][1]
    assert client.get("/api/v1/campaigns/").status_code == 200
    detail = client.get(f"/api/v1/tasks/{task.pk}").json()
    consensus = client.get("/api/v1/campaigns/matrix/consensus")
    if role in MEMBERS:
        assert consensus.status_code == 200 and "consensus" in detail
    else:
        assert consensus.status_code == 403
        assert "consensus" not in detail and "answers" not in detail
    answered = client.get(f"/api/v1/tasks/{world['tasks'][0].pk}").content.decode()
    assert SECRET_NAME not in answered


@pytest.mark.parametrize("role", ROLES)
def test_admin_is_for_administrators_only(role: str, world: dict[str, Any]) -> None:
    response = _client(role, world).get("/admin/")
    assert response.status_code == (200 if role == "admin" else 302)


@pytest.mark.parametrize("role", ["viewer", "reviewer", "owner", "admin"])
def test_researchers_see_pseudonyms_never_identities(role: str, world: dict[str, Any]) -> None:
    client = _client(role, world)
    for path in _researcher_routes(world):
        response = client.get(path)
        if response.status_code == 200 and not response.streaming:
            assert SECRET_NAME not in response.content.decode(errors="replace"), path


def test_volunteer_pages_are_public_and_never_show_answers(world: dict[str, Any]) -> None:
    client = _client("anonymous volunteer", world)
    for path in ("/", "/campaigns/matrix/", "/campaigns/matrix/classify/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert SECRET_NAME not in response.content.decode()
    lease = client.post("/api/v1/campaigns/matrix/next-task").json()
    assert "answers" not in lease["task"] and "consensus" not in lease["task"]


def test_draft_campaigns_are_invisible_to_volunteers(world: dict[str, Any]) -> None:
    Campaign.objects.filter(slug="matrix").update(status=Campaign.Status.DRAFT)
    client = _client("anonymous visitor", world)
    assert client.get("/campaigns/matrix/").status_code == 404
    task: Task = world["tasks"][0]
    assert client.get(f"/api/v1/tasks/{task.pk}").status_code == 404


def test_the_admin_covers_every_model() -> None:
    from django.contrib import admin

    ours = [m for m in apps.get_models() if m._meta.app_label in {"tasks", "verification"}]
    missing = [m._meta.label for m in ours if not admin.site.is_registered(m)]
    assert missing == []
