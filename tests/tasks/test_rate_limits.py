"""Rate limits: a flood of requests gets 429 with a clear message; a person's pace is never slowed."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.test import Client

from config.throttling import AtomicRateThrottle
from tasks.api import VolunteerThrottle
from tests.factories import CampaignFactory, TaskFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits_on(settings: Any) -> None:
    settings.CORROBORATE_RATE_LIMITS = True
    # No cache.clear(): on Redis it flushes the database shared by parallel workers; each test already
    # has its own key prefix (tests/conftest.py).


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(VolunteerThrottle, "timer", fake)

    def throttle_success(self: VolunteerThrottle) -> bool:
        # The fake clock owns the windows: real time on a loaded CI machine must not expire them (the cache
        # entry's lifetime is the window in real seconds), so keep entries for an hour during these tests.
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, 3600)
        return True

    monkeypatch.setattr(VolunteerThrottle, "throttle_success", throttle_success)
    return fake


def next_task(client: Client, slug: str) -> Any:
    return client.post(f"/api/v1/campaigns/{slug}/next-task", content_type="application/json")


def answer(client: Client, task_id: int) -> Any:
    body = {"answer": {"damage": "intact"}, "client_id": str(uuid.uuid4())}
    return client.post(f"/api/v1/tasks/{task_id}/answers", body, content_type="application/json")


def test_a_flood_of_next_task_requests_gets_429_with_a_clear_message(
    limits_on: None, clock: FakeClock, client: Client
) -> None:
    campaign = CampaignFactory()
    TaskFactory(campaign=campaign)
    statuses = [next_task(client, campaign.slug).status_code for _ in range(40)]
    assert statuses[:20] == [200] * 20
    assert 429 in statuses
    response = next_task(client, campaign.slug)
    assert response.status_code == 429
    body = response.json()
    assert body["detail"] == "Too many requests; please slow down."
    assert 0 < body["retry_after"] <= 10
    assert int(response["Retry-After"]) > 0


def test_a_script_answering_without_pause_is_stopped(
    limits_on: None, clock: FakeClock, client: Client
) -> None:
    campaign = CampaignFactory(min_answers=1, max_answers=1, gold_share=0)
    for _ in range(30):
        TaskFactory(campaign=campaign)
    statuses = []
    for _ in range(30):
        got = next_task(client, campaign.slug)
        if got.status_code != 200:
            statuses.append(got.status_code)
            continue
        statuses.append(answer(client, got.json()["task"]["id"]).status_code)
    assert 429 in statuses
    assert statuses.count(201) <= 10


def test_the_sustained_limit_stops_a_steady_script(limits_on: None, clock: FakeClock, client: Client) -> None:
    campaign = CampaignFactory(min_answers=1, max_answers=1, gold_share=0)
    for _ in range(80):
        TaskFactory(campaign=campaign)
    answered = 0
    for _ in range(80):  # one answer every 0.5 s: under the burst limit, over 60 a minute
        clock.now += 0.5
        got = next_task(client, campaign.slug)
        if got.status_code == 200 and answer(client, got.json()["task"]["id"]).status_code == 201:
            answered += 1
    assert answered <= 62


def test_a_person_answering_quickly_is_never_slowed(
    limits_on: None, clock: FakeClock, client: Client
) -> None:
    campaign = CampaignFactory(min_answers=1, max_answers=1, gold_share=0)
    for _ in range(60):
        TaskFactory(campaign=campaign)
    for n in range(60):
        # A fast volunteer: 1.2 s a task on average, now and then two in a second, a reload here and there.
        clock.now += 0.6 if n % 3 == 0 else 1.5
        got = next_task(client, campaign.slug)
        assert got.status_code == 200, (n, got.content)
        if n % 10 == 0:
            assert next_task(client, campaign.slug).status_code == 200
        assert answer(client, got.json()["task"]["id"]).status_code == 201, n


def test_limits_are_off_when_the_setting_says_so(clock: FakeClock, client: Client) -> None:
    campaign = CampaignFactory()
    TaskFactory(campaign=campaign)
    assert all(next_task(client, campaign.slug).status_code == 200 for _ in range(60))


class _Burst(AtomicRateThrottle):
    scope = "flood_test"
    THROTTLE_RATES = {"flood_test": "10/m"}

    def get_cache_key(self, request: Any, view: Any) -> str:
        return "flood-test"


def test_requests_arriving_together_never_pass_the_limit() -> None:
    """DRF's own throttle reads a client's history, decides, then writes it back, so requests sent at once
    all read the same history and pass together. Here the decision is atomic (a Lua script on Redis, a lock
    in memory): 8 threads sending 10 requests each at once get exactly the limit of 10 through."""
    start = threading.Barrier(8)
    allowed: list[bool] = []

    def flood() -> None:
        start.wait()
        for _ in range(10):
            allowed.append(_Burst().allow_request(None, None))

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 80 and allowed.count(True) == 10
    refused = _Burst()
    assert not refused.allow_request(None, None)
    assert 0 < (refused.wait() or 0) <= 60


def test_requests_without_a_session_share_one_budget_and_a_refused_one_creates_nothing(
    limits_on: None, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A script that throws its cookies away would create a volunteer per request: without an IP address to
    tell clients apart, newcomers share one site-wide budget (RATE_NEWCOMERS), which volunteers who already
    hold a session never touch."""
    from tasks.api import NewcomerThrottle
    from tasks.models import Volunteer

    monkeypatch.setattr(
        NewcomerThrottle, "THROTTLE_RATES", {**NewcomerThrottle.THROTTLE_RATES, "newcomers": "5/m"}
    )
    campaign = CampaignFactory(gold_share=0)
    for _ in range(10):
        TaskFactory(campaign=campaign)
    newcomers = [Client() for _ in range(6)]
    assert [next_task(c, campaign.slug).status_code for c in newcomers[:5]] == [200] * 5
    refused = next_task(newcomers[5], campaign.slug)
    assert refused.status_code == 429 and 0 < refused.json()["retry_after"] <= 60
    assert Volunteer.objects.count() == 5 and "sessionid" not in refused.cookies
    # Volunteers with a session go on; the budget frees up as the minute passes.
    assert next_task(newcomers[0], campaign.slug).status_code == 200
    clock.now += 61
    assert next_task(newcomers[5], campaign.slug).status_code == 200
    assert Volunteer.objects.count() == 6


def test_a_newcomer_past_the_budget_comes_in_with_a_proof_of_work_and_the_proof_is_spent(
    limits_on: None, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """At a launch more real people may arrive than RATE_NEWCOMERS lets in; the one refused is offered a
    challenge, and a proof of work on it (what the classify page computes) lets them in at once, once."""
    from tasks.api import NewcomerThrottle
    from tasks.models import Volunteer
    from tests.test_proof_of_work import solve

    settings.NEWCOMER_PROOF_BITS = 12
    monkeypatch.setattr(
        NewcomerThrottle, "THROTTLE_RATES", {**NewcomerThrottle.THROTTLE_RATES, "newcomers": "1/m"}
    )
    campaign = CampaignFactory(gold_share=0)
    for _ in range(5):
        TaskFactory(campaign=campaign)
    assert next_task(Client(), campaign.slug).status_code == 200
    refused = next_task(Client(), campaign.slug)
    assert refused.status_code == 429
    offer = refused.json()["proof"]
    assert offer["bits"] == 12 and offer["header"] == "X-Newcomer-Proof" and offer["expires_in"] == 300
    assert Volunteer.objects.count() == 1
    proof = solve(offer["challenge"], offer["bits"])
    newcomer = Client()
    admitted = newcomer.post(
        f"/api/v1/campaigns/{campaign.slug}/next-task",
        content_type="application/json",
        headers={"X-Newcomer-Proof": proof},
    )
    assert admitted.status_code == 200 and admitted.json()["task"]["id"]
    assert Volunteer.objects.count() == 2
    # The admitted newcomer now holds a session and never meets the budget again.
    assert next_task(newcomer, campaign.slug).status_code == 200
    # The same proof does not admit anybody else: they are offered a challenge of their own.
    again = Client().post(
        f"/api/v1/campaigns/{campaign.slug}/next-task",
        content_type="application/json",
        headers={"X-Newcomer-Proof": proof},
    )
    assert again.status_code == 429 and again.json()["proof"]["challenge"] != offer["challenge"]
    assert Volunteer.objects.count() == 2


def test_with_proofs_turned_off_a_refused_newcomer_only_waits(
    limits_on: None, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    from tasks.api import NewcomerThrottle

    settings.NEWCOMER_PROOF_BITS = 0
    monkeypatch.setattr(
        NewcomerThrottle, "THROTTLE_RATES", {**NewcomerThrottle.THROTTLE_RATES, "newcomers": "1/m"}
    )
    campaign = CampaignFactory(gold_share=0)
    TaskFactory(campaign=campaign)
    TaskFactory(campaign=campaign)
    assert next_task(Client(), campaign.slug).status_code == 200
    refused = next_task(Client(), campaign.slug)
    assert refused.status_code == 429 and "proof" not in refused.json()
    assert 0 < refused.json()["retry_after"] <= 60
