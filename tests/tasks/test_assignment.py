"""Task assignment: never twice, never retired, slots counted with open leases, leases, skips, gold ramp, races."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from importlib import import_module
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.db import connections, transaction
from django.test import Client
from django.utils import timezone

from tasks import services
from tasks.models import Assignment, Campaign, Task, Volunteer
from tests.factories import CampaignFactory, TaskFactory, UserFactory, VolunteerFactory
from verification.models import Answer, VolunteerReliability
from verification.services import answer_submit, consensus_recompute_campaign

pytestmark = pytest.mark.django_db


def next_task(client: Client, slug: str) -> Any:
    return client.post(f"/api/v1/campaigns/{slug}/next-task", content_type="application/json")


def answer(client: Client, task_id: int, value: str = "intact") -> Any:
    body = {"answer": {"damage": value}, "client_id": str(uuid.uuid4()), "duration_ms": 1500}
    return client.post(f"/api/v1/tasks/{task_id}/answers", body, content_type="application/json")


def lease(campaign: Campaign, volunteer: Volunteer, now: Any = None) -> Task | None:
    assignment = services.task_lease_next(campaign=campaign, volunteer=volunteer, now=now)
    return assignment.task if assignment else None


def expire_every_lease() -> None:
    """Time passes: every lease expires, and with them the "all slots leased" hints, which never outlive them."""
    past = timezone.now() - timedelta(seconds=1)
    Assignment.objects.update(expires_at=past)
    Task.objects.exclude(leases_full_until=None).update(leases_full_until=past)


def test_a_skipped_task_is_never_served_again(client: Client) -> None:
    campaign = CampaignFactory(gold_share=0)
    first, second = TaskFactory(campaign=campaign), TaskFactory(campaign=campaign)
    served = next_task(client, campaign.slug).json()["task"]["id"]
    assert client.post(f"/api/v1/tasks/{served}/skip").status_code == 204
    other = next_task(client, campaign.slug).json()["task"]["id"]
    assert {served, other} == {first.pk, second.pk}
    assert answer(client, other).status_code == 201
    assert next_task(client, campaign.slug).status_code == 204


def test_skip_without_a_session_is_403_and_after_answering_is_409(client: Client) -> None:
    campaign = CampaignFactory()
    task = TaskFactory(campaign=campaign)
    assert client.post(f"/api/v1/tasks/{task.pk}/skip").status_code == 403
    served = next_task(client, campaign.slug).json()["task"]["id"]
    assert answer(client, served).status_code == 201
    assert client.post(f"/api/v1/tasks/{served}/skip").status_code == 409


def test_retired_tasks_are_never_served() -> None:
    campaign = CampaignFactory(gold_share=0)
    TaskFactory(campaign=campaign, status=Task.Status.RETIRED)
    TaskFactory(campaign=campaign, status=Task.Status.NEEDS_REVIEW)
    assert lease(campaign, VolunteerFactory()) is None


def test_a_task_is_never_leased_to_more_volunteers_than_it_still_needs() -> None:
    campaign = CampaignFactory(min_answers=2, max_answers=4, gold_share=0)
    task = TaskFactory(campaign=campaign)
    volunteers = [VolunteerFactory() for _ in range(3)]
    assert lease(campaign, volunteers[0]) == task
    assert lease(campaign, volunteers[1]) == task
    assert lease(campaign, volunteers[2]) is None
    # One answer in: the task still needs one more, and one lease is open, so still no room.
    answer_submit(task=task, volunteer=volunteers[0], answer={"damage": "intact"}, client_id=uuid.uuid4())
    assert lease(campaign, volunteers[2]) is None


def test_expired_leases_free_their_slot_silently() -> None:
    campaign = CampaignFactory(min_answers=1, max_answers=3, gold_share=0, lease_seconds=600)
    task = TaskFactory(campaign=campaign)
    first, second = VolunteerFactory(), VolunteerFactory()
    assert lease(campaign, first) == task
    assert lease(campaign, second) is None
    later = timezone.now() + timedelta(seconds=601)
    assert lease(campaign, second, now=later) == task


def test_the_lease_expiry_defaults_to_ten_minutes_and_is_in_the_payload(client: Client) -> None:
    campaign = CampaignFactory()
    TaskFactory(campaign=campaign)
    before = timezone.now()
    body = next_task(client, campaign.slug).json()
    expires = timezone.datetime.fromisoformat(body["lease_expires_at"])
    assert timedelta(seconds=590) < expires - before < timedelta(seconds=610)
    assert body["lease_seconds"] == 600


def test_renewing_a_lease_pushes_its_expiry(client: Client) -> None:
    campaign = CampaignFactory()
    TaskFactory(campaign=campaign)
    task_id = next_task(client, campaign.slug).json()["task"]["id"]
    Assignment.objects.update(expires_at=timezone.now() + timedelta(seconds=60))
    response = client.post(f"/api/v1/tasks/{task_id}/lease")
    assert response.status_code == 200
    expires = timezone.datetime.fromisoformat(response.json()["lease_expires_at"])
    assert expires - timezone.now() > timedelta(seconds=590)


def test_an_expired_lease_is_not_renewed_once_someone_else_holds_the_slot(client: Client) -> None:
    campaign = CampaignFactory(min_answers=1, max_answers=2, gold_share=0)
    task = TaskFactory(campaign=campaign)
    next_task(client, campaign.slug)
    expire_every_lease()
    assert lease(campaign, VolunteerFactory()) == task
    assert client.post(f"/api/v1/tasks/{task.pk}/lease").status_code == 409
    other = TaskFactory(campaign=campaign)
    assert client.post(f"/api/v1/tasks/{other.pk}/lease").status_code == 409


def test_an_answer_after_the_task_filled_up_is_refused_even_with_an_old_lease(client: Client) -> None:
    campaign = CampaignFactory(min_answers=1, max_answers=1, gold_share=0)
    task = TaskFactory(campaign=campaign)
    next_task(client, campaign.slug)
    expire_every_lease()
    someone = VolunteerFactory()
    assert lease(campaign, someone) == task
    answer_submit(task=task, volunteer=someone, answer={"damage": "intact"}, client_id=uuid.uuid4())
    assert answer(client, task.pk).status_code == 409
    assert Answer.objects.filter(task_id=task.pk).count() == 1


def test_the_most_informative_task_comes_first() -> None:
    campaign = CampaignFactory(gold_share=0)
    TaskFactory(campaign=campaign, priority=0.0)
    close_to_retirement = TaskFactory(campaign=campaign, priority=2.4)
    TaskFactory(campaign=campaign, priority=1.1)
    assert lease(campaign, VolunteerFactory()) == close_to_retirement


def test_gold_share_follows_the_training_ramp() -> None:
    campaign = CampaignFactory(gold_share=0.1)
    shares = [services.gold_share_for(campaign=campaign, answered=n) for n in (0, 19, 20, 40, 60, 500)]
    assert shares == [0.4, 0.4, 0.3, 0.2, 0.1, 0.1]
    assert services.gold_share_for(campaign=CampaignFactory(gold_share=0), answered=0) == 0.0


def test_newcomers_see_about_forty_percent_gold_in_their_first_twenty_tasks() -> None:
    campaign = CampaignFactory(gold_share=0.1, min_answers=20, max_answers=50)
    for _ in range(25):
        TaskFactory(campaign=campaign)
    for _ in range(25):
        TaskFactory(campaign=campaign, is_gold=True, gold_answer={"damage": "intact"})
    gold_seen = 0
    volunteers = [VolunteerFactory() for _ in range(10)]
    for volunteer in volunteers:
        for _ in range(20):
            task = lease(campaign, volunteer)
            assert task is not None
            gold_seen += task.is_gold
            answer_submit(task=task, volunteer=volunteer, answer={"damage": "intact"}, client_id=uuid.uuid4())
    assert 0.28 <= gold_seen / 200 <= 0.52


def test_each_volunteer_meets_the_gold_tasks_in_an_order_of_their_own_and_each_once() -> None:
    """Newcomers who arrive together must not all answer the same gold task at the same moment."""
    campaign = CampaignFactory(gold_share=1.0, min_answers=3, max_answers=5)
    gold = [TaskFactory(campaign=campaign, is_gold=True, gold_answer={"damage": "intact"}) for _ in range(8)]
    orders = []
    for volunteer in [VolunteerFactory() for _ in range(12)]:
        seen = []
        while (task := lease(campaign, volunteer)) is not None:
            assert task.is_gold
            seen.append(task.pk)
            answer_submit(task=task, volunteer=volunteer, answer={"damage": "intact"}, client_id=uuid.uuid4())
        assert sorted(seen) == sorted(t.pk for t in gold)  # every gold task, each once
        orders.append(tuple(seen))
    # Not one first gold task, nor one order, for everyone. The orders are drawn at random from the volunteers'
    # public ids: in 20,000 simulated draws of 12 volunteers, the fewest first tasks was 3 and orders 5.
    assert len({order[0] for order in orders}) >= 3
    assert len(set(orders)) >= 4


def test_next_task_never_shows_other_volunteers_answers_and_reports_progress(client: Client) -> None:
    campaign = CampaignFactory(min_answers=3, max_answers=5, gold_share=0)
    task = TaskFactory(campaign=campaign)
    TaskFactory(campaign=campaign, status=Task.Status.RETIRED)
    answer_submit(
        task=task, volunteer=VolunteerFactory(), answer={"damage": "destroyed"}, client_id=uuid.uuid4()
    )
    body = next_task(client, campaign.slug).json()
    assert body["task"]["id"] == task.pk
    assert "destroyed" not in str(body["task"])
    assert "consensus" not in body["task"] and "answers" not in body["task"]
    assert body["progress"] == {"answered": 0, "answered_today": 0, "campaign_percent": 50}
    assert answer(client, task.pk).status_code == 201


def test_progress_counts_answers_here_and_today() -> None:
    campaign = CampaignFactory(gold_share=0, min_answers=1)
    for _ in range(3):
        TaskFactory(campaign=campaign)
    volunteer = VolunteerFactory()
    for _ in range(2):
        task = lease(campaign, volunteer)
        assert task is not None
        answer_submit(task=task, volunteer=volunteer, answer={"damage": "intact"}, client_id=uuid.uuid4())
    result = services.task_lease_next_with_stats(campaign=campaign, volunteer=volunteer)
    assert result is not None
    assert result.stats == {"answered": 2, "answered_today": 2}


def test_the_count_of_answers_here_is_kept_exactly_through_refits_and_the_migration() -> None:
    """The campaign's count is kept with the volunteer's statistics, answer by answer ("unsure" included);
    the refit, which rewrites the model's own count, leaves it alone; and the migration that introduced it
    counted the answers given before it, statistics rows missing included."""
    campaign = CampaignFactory(gold_share=0, min_answers=1)
    for _ in range(4):
        TaskFactory(campaign=campaign)
    volunteer = VolunteerFactory()
    for label in ("intact", "unsure", "destroyed"):
        task = lease(campaign, volunteer)
        assert task is not None
        answer_submit(task=task, volunteer=volunteer, answer={"damage": label}, client_id=uuid.uuid4())
    consensus_recompute_campaign(campaign=campaign)
    statistics = VolunteerReliability.objects.get(campaign=campaign, volunteer=volunteer)
    assert statistics.answers_given == 3
    stats = services.task_lease_next_with_stats(campaign=campaign, volunteer=volunteer)
    assert stats is not None and stats.stats["answered"] == 3

    other = CampaignFactory(gold_share=0, min_answers=1)
    TaskFactory(campaign=other)
    task = lease(other, volunteer)
    assert task is not None
    answer_submit(task=task, volunteer=volunteer, answer={"damage": "intact"}, client_id=uuid.uuid4())
    VolunteerReliability.objects.filter(campaign=campaign).update(answers_given=0)
    VolunteerReliability.objects.filter(campaign=other).delete()
    import_module("verification.migrations.0007_reliability_answers_given").count_answers(django_apps, None)
    assert dict(VolunteerReliability.objects.values_list("campaign_id", "answers_given")) == {
        campaign.pk: 3,
        other.pk: 1,
    }


def test_registering_keeps_the_anonymous_volunteers_answers(client: Client) -> None:
    campaign = CampaignFactory(gold_share=0)
    TaskFactory(campaign=campaign)
    TaskFactory(campaign=campaign)
    task_id = next_task(client, campaign.slug).json()["task"]["id"]
    assert answer(client, task_id).status_code == 201
    volunteer = Volunteer.objects.get()
    response = client.post(
        "/accounts/register/",
        {"username": "newcomer", "password1": "a-long-passphrase-9", "password2": "a-long-passphrase-9"},
    )
    assert response.status_code == 302
    volunteer.refresh_from_db()
    assert volunteer.user is not None and volunteer.user.username == "newcomer"
    assert not volunteer.is_anonymous
    assert Answer.objects.filter(volunteer=volunteer).count() == 1
    # Logged in now, the same volunteer goes on and is not served the task again.
    assert next_task(client, campaign.slug).json()["task"]["id"] != task_id
    assert Volunteer.objects.count() == 1


def test_logging_in_elsewhere_finds_the_registered_volunteer() -> None:
    user = UserFactory(username="returning")
    volunteer = VolunteerFactory(user=user, is_anonymous=False)
    campaign = CampaignFactory()
    TaskFactory(campaign=campaign)
    client = Client()
    client.force_login(user)
    assert next_task(client, campaign.slug).status_code == 200
    assert Assignment.objects.get().volunteer == volunteer


def _race(campaign: Campaign, volunteers: list[Volunteer], rounds: int) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(volunteers))

    def work(volunteer: Volunteer) -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                assignment = services.task_lease_next(campaign=campaign, volunteer=volunteer)
                if assignment is None:
                    return
                if assignment.task.pk % 2 == 0:
                    answer_submit(
                        task=assignment.task,
                        volunteer=volunteer,
                        answer={"damage": "intact"},
                        client_id=uuid.uuid4(),
                    )
                else:
                    services.task_skip(task=assignment.task, volunteer=volunteer)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(v,)) for v in volunteers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.django_db(transaction=True)
def test_volunteers_racing_for_few_slots_on_postgresql(require_postgres: None) -> None:
    campaign = CampaignFactory(min_answers=2, max_answers=3, gold_share=0)
    tasks = [TaskFactory(campaign=campaign) for _ in range(4)]
    volunteers = [VolunteerFactory() for _ in range(24)]
    # Each volunteer holds at most one open lease at a time; a first pass of leases with no answers must
    # hand out at most min_answers leases per task.
    held: list[Assignment | None] = [None] * len(volunteers)
    barrier = threading.Barrier(len(volunteers))

    def take(index: int) -> None:
        try:
            barrier.wait()
            held[index] = services.task_lease_next(campaign=campaign, volunteer=volunteers[index])
        finally:
            connections.close_all()

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(volunteers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    per_task: dict[int, int] = {}
    for assignment in held:
        if assignment is not None:
            per_task[assignment.task_id] = per_task.get(assignment.task_id, 0) + 1
    assert per_task == {t.pk: 2 for t in tasks}
    # Then everyone races through answer/skip cycles: no task over max, no duplicate answers.
    Assignment.objects.all().delete()
    errors = _race(campaign, volunteers, rounds=6)
    assert errors == []
    for task in Task.objects.filter(campaign_id=campaign.pk):
        assert task.answer_count == Answer.objects.filter(task=task).count() <= campaign.max_answers
    pairs = list(Answer.objects.values_list("task_id", "volunteer_id"))
    assert len(pairs) == len(set(pairs))


RACE_ON_SQLITE = """
import django, threading
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from tests.factories import CampaignFactory, TaskFactory, VolunteerFactory
from tests.tasks.test_assignment import _race
from tasks.models import Task
from verification.models import Answer
campaign = CampaignFactory(min_answers=2, max_answers=3, gold_share=0)
for _ in range(3):
    TaskFactory(campaign=campaign)
errors = _race(campaign, [VolunteerFactory() for _ in range(8)], rounds=4)
assert errors == [], errors
for task in Task.objects.filter(campaign=campaign):
    assert task.answer_count == Answer.objects.filter(task=task).count() <= campaign.max_answers, task
pairs = list(Answer.objects.values_list("task_id", "volunteer_id"))
assert len(pairs) == len(set(pairs)) > 0
print("race ok", len(pairs))
"""


def test_volunteers_racing_on_the_embedded_database(tmp_path: Any) -> None:
    """The laptop shape: a real SQLite file (the in-memory test database has table locks instead)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'race.sqlite3'}",
        "CORROBORATE_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "REDIS_URL": "",
        "LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-c", RACE_ON_SQLITE], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "race ok" in done.stdout


def test_a_task_with_every_slot_leased_carries_a_hint_until_its_first_lease_expires() -> None:
    """The next-task walk passes a fully leased task on the hint, without counting its leases; an answer or
    a skip that frees a slot clears the hint, and it never outlives the leases."""
    campaign = CampaignFactory(min_answers=2, max_answers=3, gold_share=0)
    task = TaskFactory(campaign=campaign)
    now = timezone.now()
    first, second, third = VolunteerFactory(), VolunteerFactory(), VolunteerFactory()
    assert lease(campaign, first, now) == task
    task.refresh_from_db()
    assert task.leases_full_until is None  # one slot of two taken
    later = now + timedelta(seconds=30)
    assert lease(campaign, second, later) == task
    task.refresh_from_db()
    # Full until the first of the two leases expires, not the second.
    assert task.leases_full_until == now + timedelta(seconds=campaign.lease_seconds)
    assert lease(campaign, third, later) is None
    # The first volunteer skips: a slot is free again, and the hint is gone.
    services.task_skip(task=task, volunteer=first)
    task.refresh_from_db()
    assert task.leases_full_until is None
    assert lease(campaign, third, later) == task
    task.refresh_from_db()
    assert task.leases_full_until is not None
    # An answer clears it too (the task may need another answer, or retire).
    answer_submit(task=task, volunteer=second, answer={"damage": "intact"}, client_id=uuid.uuid4())
    task.refresh_from_db()
    assert task.leases_full_until is None


def test_the_hint_never_hides_a_task_once_its_leases_expired() -> None:
    campaign = CampaignFactory(min_answers=1, max_answers=2, gold_share=0)
    task = TaskFactory(campaign=campaign)
    now = timezone.now()
    assert lease(campaign, VolunteerFactory(), now) == task
    task.refresh_from_db()
    assert task.leases_full_until == now + timedelta(seconds=campaign.lease_seconds)
    assert lease(campaign, VolunteerFactory(), now + timedelta(seconds=campaign.lease_seconds - 1)) is None
    assert lease(campaign, VolunteerFactory(), now + timedelta(seconds=campaign.lease_seconds + 1)) == task


@pytest.mark.django_db(transaction=True)
def test_leases_commit_without_waiting_for_the_disk_and_answers_wait(require_postgres: None) -> None:
    """A lease lost in a crash only means the task is offered again; an acknowledged answer must survive."""
    from django.db import connection

    campaign = CampaignFactory(min_answers=2, max_answers=3, gold_share=0)
    task = TaskFactory(campaign=campaign)
    seen: list[str] = []
    real_lease_write = services._lease_write

    def spying_lease_write(**kwargs: Any) -> Any:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            seen.append(cursor.fetchone()[0])
        return real_lease_write(**kwargs)

    def synchronous_commit() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return str(cursor.fetchone()[0])

    services._lease_write = spying_lease_write  # type: ignore[assignment]
    try:
        assert lease(campaign, VolunteerFactory()) == task
        assert seen == ["off"]
        assert synchronous_commit() == "on"  # local to the lease's transaction: answers wait for the disk
        # Inside a caller's transaction the lease leaves the caller's durability alone.
        with transaction.atomic():
            services.task_lease_next_with_stats(campaign=campaign, volunteer=VolunteerFactory())
            assert synchronous_commit() == "on"
        assert seen == ["off", "on"]
    finally:
        services._lease_write = real_lease_write  # type: ignore[assignment]
