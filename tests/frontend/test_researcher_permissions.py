"""Who may do what in the researcher workspace: every page and JSON call against every kind of visitor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tasks.models import CampaignMembership, Job, Task, Volunteer
from tests.factories import CampaignFactory, TaskFactory, grant
from verification.models import AuditItem, Consensus, EvidenceSet

pytestmark = pytest.mark.django_db

User = get_user_model()

ROLES = ["owner", "reviewer", "viewer", "stranger", "volunteer", "anonymous"]
RANK = {"viewer": 1, "reviewer": 2, "owner": 3}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    needs: str  # viewer, reviewer or owner of the campaign
    ok: int  # status for a visitor who may call it (POSTs send an empty, invalid form)
    json: bool = False
    xhr: bool = False


ENDPOINTS = [
    Endpoint("GET", "/researcher/{slug}/", "viewer", 200),
    Endpoint("GET", "/researcher/{slug}/settings/", "owner", 200),
    Endpoint("POST", "/researcher/{slug}/settings/", "owner", 200),
    Endpoint("GET", "/researcher/{slug}/members/", "owner", 200),
    Endpoint("POST", "/researcher/{slug}/members/", "owner", 200),
    Endpoint("GET", "/researcher/{slug}/sources/", "viewer", 200),
    Endpoint("POST", "/researcher/{slug}/sources/", "owner", 400, xhr=True),
    Endpoint("GET", "/researcher/{slug}/jobs/{job}.json", "viewer", 200, json=True),
    Endpoint("GET", "/researcher/{slug}/dashboard/", "viewer", 200),
    Endpoint("POST", "/researcher/{slug}/volunteers/block", "owner", 400),
    Endpoint("GET", "/researcher/{slug}/map/", "viewer", 200),
    Endpoint("GET", "/researcher/{slug}/map.geojson", "viewer", 200, json=True),
    Endpoint("GET", "/researcher/{slug}/review/", "viewer", 200),
    Endpoint("GET", "/researcher/{slug}/tasks/{task}/", "viewer", 200),
    Endpoint("POST", "/researcher/{slug}/tasks/{task}/decide", "reviewer", 400),
    Endpoint("POST", "/researcher/{slug}/tasks/{task}/gold", "reviewer", 400),
    Endpoint("GET", "/researcher/{slug}/gold/", "reviewer", 200),
    Endpoint("POST", "/researcher/{slug}/gold/", "reviewer", 400),
    Endpoint("GET", "/researcher/{slug}/evidence/", "viewer", 200),
    Endpoint("POST", "/researcher/{slug}/evidence/", "reviewer", 400),
    Endpoint("GET", "/researcher/{slug}/evidence/{set}/", "viewer", 200),
    Endpoint("POST", "/researcher/{slug}/evidence/{set}/", "reviewer", 400),
    Endpoint("GET", "/researcher/{slug}/audit/", "viewer", 200),
    Endpoint("POST", "/researcher/{slug}/audit/draw", "reviewer", 302),
    Endpoint("GET", "/researcher/{slug}/audit/{task}/", "reviewer", 200),
    Endpoint("POST", "/researcher/{slug}/audit/{task}/", "reviewer", 400),
    Endpoint("GET", "/researcher/{slug}/promote/", "owner", 200),
    Endpoint("POST", "/researcher/{slug}/promote/", "owner", 400),
]


def expected(endpoint: Endpoint, who: str) -> int:
    if who == "anonymous":
        return 403 if endpoint.json else 302
    if who in ("stranger", "volunteer"):
        return 404  # the campaign's existence is not disclosed to outsiders
    return endpoint.ok if RANK[who] >= RANK[endpoint.needs] else 403


@pytest.fixture
def world() -> dict[str, Any]:
    campaign: Any = CampaignFactory(slug="darfur")
    task: Any = TaskFactory(campaign=campaign, status=Task.Status.NEEDS_REVIEW, footprint=None)
    Consensus.objects.create(task=task, label="destroyed", confidence=0.5, n_answers=3)
    # No passwords: the clients log in with force_login, and hashing five passwords per test is slow.
    users = {
        role: User.objects.create(username=role)
        for role in ("owner", "reviewer", "viewer", "stranger", "volunteer")
    }
    for role in ("owner", "reviewer", "viewer"):
        grant(campaign, users[role], role)
    grant(CampaignFactory(slug="elsewhere"), users["stranger"], CampaignMembership.Role.OWNER)
    Volunteer.objects.create(user=users["volunteer"], is_anonymous=False)
    evidence_set = EvidenceSet.objects.create(campaign=campaign, name="Destroyed")
    AuditItem.objects.create(
        campaign=campaign, task=task, crowd_label="destroyed", crowd_confidence=0.5, drawn_by=users["owner"]
    )
    job = Job.objects.create(campaign=campaign, kind="ingest_imagery", params={"before_name": "a.tif"})
    ids = {"slug": campaign.slug, "task": task.pk, "set": evidence_set.pk, "job": job.pk}
    return {"users": users, "ids": ids}


def client_for(world: dict[str, Any], who: str) -> Client:
    client = Client()
    if who != "anonymous":
        client.force_login(world["users"][who])
    return client


def call(client: Client, endpoint: Endpoint, ids: dict[str, Any]) -> int:
    path = endpoint.path.format(**ids)
    headers = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"} if endpoint.xhr else {}
    if endpoint.method == "GET":
        return client.get(path, **headers).status_code
    return client.post(path, {}, **headers).status_code


@pytest.mark.parametrize("who", ROLES)
def test_every_campaign_page_and_call(world, who):
    client = client_for(world, who)
    got = {f"{e.method} {e.path}": call(client, e, world["ids"]) for e in ENDPOINTS}
    want = {f"{e.method} {e.path}": expected(e, who) for e in ENDPOINTS}
    assert got == want


WORKSPACE = {
    # who: (GET /researcher/, GET /researcher/new/, POST /researcher/new/ with an empty form)
    "owner": (200, 200, 200),
    "reviewer": (200, 403, 403),
    "viewer": (200, 403, 403),
    "stranger": (200, 200, 200),
    "volunteer": (403, 403, 403),
    "anonymous": (302, 302, 302),
}


@pytest.mark.parametrize("who", ROLES)
def test_workspace_home_and_campaign_creation(world, who):
    client = client_for(world, who)
    got = (
        client.get("/researcher/").status_code,
        client.get("/researcher/new/").status_code,
        client.post("/researcher/new/", {}).status_code,
    )
    assert got == WORKSPACE[who]


CONSENSUS_API = {
    "owner": 200,
    "reviewer": 200,
    "viewer": 200,
    "stranger": 403,
    "volunteer": 403,
    "anonymous": 403,
}


@pytest.mark.parametrize("who", ROLES)
def test_consensus_api(world, who):
    assert client_for(world, who).get("/api/v1/campaigns/darfur/consensus").status_code == CONSENSUS_API[who]


def test_researchers_see_only_their_campaigns(world):
    page = client_for(world, "stranger").get("/researcher/").content.decode()
    assert "/researcher/elsewhere/" in page and "/researcher/darfur/" not in page
    admin = User.objects.create(username="root", is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(admin)
    page = client.get("/researcher/").content.decode()
    assert "/researcher/elsewhere/" in page and "/researcher/darfur/" in page


def test_viewers_get_no_forms_that_they_could_not_use(world):
    ids = world["ids"]
    viewer = client_for(world, "viewer")
    assert 'id="upload-form"' not in viewer.get("/researcher/darfur/sources/").content.decode()
    task_page = viewer.get(f"/researcher/darfur/tasks/{ids['task']}/").content.decode()
    assert 'id="decision-form"' not in task_page and 'id="gold-form"' not in task_page
    reviewer_page = (
        client_for(world, "reviewer").get(f"/researcher/darfur/tasks/{ids['task']}/").content.decode()
    )
    assert 'id="decision-form"' in reviewer_page
