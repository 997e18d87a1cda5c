"""config/fastsql.py: plain SQL on the hot path must store and load values exactly as the ORM does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction

from config import fastsql
from tasks.models import Assignment, Campaign, Task
from tests.factories import CampaignFactory, TaskFactory, VolunteerFactory
from verification.models import Answer

pytestmark = pytest.mark.django_db


def test_insert_and_load_round_trip_json_uuid_and_datetimes() -> None:
    task = TaskFactory()
    volunteer = VolunteerFactory()
    at = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)
    client_id = uuid.uuid4()
    answer = {"damage": "destroyed", "notes": 'é, "quoted"', "points": [[1.5, 2.25]]}
    (answer_id,) = fastsql.insert(
        Answer,
        {
            "task": task.pk,
            "volunteer": volunteer.pk,
            "campaign": task.campaign_id,
            "answer": answer,
            "label": "destroyed",
            "client_id": client_id,
            "duration_ms": 1234,
            "created_at": at,
        },
        returning=("id",),
    ) or (None,)
    stored = Answer.objects.get(pk=answer_id)
    assert (stored.answer, stored.client_id, stored.created_at, stored.duration_ms) == (
        answer,
        client_id,
        at,
        1234,
    )
    row = fastsql.fetch_one(
        f"SELECT {fastsql.columns(Answer, 'a')} FROM {fastsql.table(Answer)} a WHERE a.id = %s", [answer_id]
    )
    assert row is not None
    loaded, end = fastsql.load(Answer, row)
    assert end == len(row)
    assert (loaded.pk, loaded.answer, loaded.client_id, loaded.created_at, loaded.task_id) == (
        answer_id,
        answer,
        client_id,
        at,
        task.pk,
    )
    assert not loaded._state.adding


def test_upsert_updates_only_the_named_fields() -> None:
    task = TaskFactory()
    volunteer = VolunteerFactory()
    first = datetime(2026, 1, 1, tzinfo=UTC)
    values = {
        "task": task.pk,
        "volunteer": volunteer.pk,
        "campaign": task.campaign_id,
        "state": Assignment.State.LEASED.value,
        "leased_at": first,
        "expires_at": first + timedelta(minutes=10),
    }
    fastsql.insert(Assignment, values)
    later = first + timedelta(hours=1)
    fastsql.insert(
        Assignment,
        {**values, "state": Assignment.State.ANSWERED.value, "leased_at": later, "expires_at": later},
        conflict=("task", "volunteer"),
        update=("state", "expires_at"),
    )
    assignment = Assignment.objects.get(task=task, volunteer=volunteer)
    assert (assignment.state, assignment.leased_at, assignment.expires_at) == ("answered", first, later)


def test_unique_constraints_still_refuse_duplicates() -> None:
    task = TaskFactory()
    volunteer = VolunteerFactory()
    values = {
        "task": task.pk,
        "volunteer": volunteer.pk,
        "campaign": task.campaign_id,
        "answer": {"damage": "intact"},
        "label": "intact",
        "client_id": uuid.uuid4(),
        "duration_ms": None,
        "created_at": datetime.now(UTC),
    }
    fastsql.insert(Answer, values)
    with pytest.raises(IntegrityError), transaction.atomic():
        fastsql.insert(Answer, {**values, "client_id": uuid.uuid4()})
    assert Answer.objects.filter(task=task).count() == 1


def test_selectors_read_campaign_and_task_with_sources() -> None:
    from tasks import selectors

    campaign = CampaignFactory(status=Campaign.Status.LIVE)
    assert selectors.campaign_by_slug(campaign.slug) == campaign
    assert selectors.campaign_by_slug(campaign.slug).question_set == campaign.question_set  # type: ignore[union-attr]
    assert selectors.campaign_by_slug("no-such-campaign") is None
    task = TaskFactory(campaign=campaign, window={"col_off": 0, "row_off": 0, "width": 256, "height": 256})
    volunteer = VolunteerFactory()
    loaded, leases = selectors.task_for_lease(task_id=task.pk, volunteer=volunteer, now=datetime.now(UTC))
    assert (loaded.pk, loaded.window, loaded.source.sha256, loaded.after_source) == (
        task.pk,
        task.window,
        task.source.sha256,
        None,
    )
    assert (leases.count, leases.first_expiry) == (0, None)
    expiry = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    Assignment.objects.create(
        task=task, volunteer=VolunteerFactory(), campaign=campaign, leased_at=expiry, expires_at=expiry
    )
    _, leases = selectors.task_for_lease(task_id=task.pk, volunteer=volunteer, now=datetime.now(UTC))
    assert (leases.count, leases.first_expiry) == (1, expiry)
    with pytest.raises(Task.DoesNotExist):
        selectors.task_for_lease(task_id=task.pk + 1000, volunteer=volunteer, now=datetime.now(UTC))


def test_write_together_returns_each_writes_value_and_fails_as_one() -> None:
    task = TaskFactory()
    volunteer = VolunteerFactory()
    now = datetime(2026, 5, 4, tzinfo=UTC)

    def new_answer(client_id: uuid.UUID) -> Answer:
        return Answer(
            task=task,
            volunteer=volunteer,
            campaign_id=task.campaign_id,
            answer={"damage": "intact"},
            label="intact",
            client_id=client_id,
            created_at=now,
        )

    answer_id, unchanged, moved = fastsql.write_together(
        [
            fastsql.insert_write(new_answer(uuid.uuid4())),
            fastsql.Write(
                f"UPDATE {fastsql.table(Task)} SET answer_count = 7 WHERE id = %s", [-1], '"answer_count"'
            ),
            fastsql.update_write(Task, task.pk, {"answer_count": 1, "flags": {"graphic": True}}),
        ]
    )
    assert Answer.objects.get(pk=answer_id).task_id == task.pk
    assert (unchanged, moved) == (None, None)  # no row changed; no value asked for
    task.refresh_from_db()
    assert (task.answer_count, task.flags) == (1, {"graphic": True})
    # A second answer by the same volunteer to the task: the unique constraint fails the whole batch,
    # so the task update beside it is not applied either.
    with pytest.raises(IntegrityError), transaction.atomic():
        fastsql.write_together(
            [
                fastsql.update_write(Task, task.pk, {"answer_count": 2}),
                fastsql.insert_write(new_answer(uuid.uuid4())),
            ]
        )
    task.refresh_from_db()
    assert task.answer_count == 1
    assert Answer.objects.filter(task=task).count() == 1


@pytest.mark.django_db(transaction=True)
def test_value_dependent_statements_are_planned_per_call_and_key_lookups_reuse_a_plan(
    require_postgres: None,
) -> None:
    """On PostgreSQL: the next-task walk and a volunteer's counts are never prepared statements (so never a
    generic plan); the lookups by key are, once a connection has run them often enough."""
    from django.db import connection

    from tasks import services

    campaign = CampaignFactory(min_answers=3, max_answers=5, gold_share=0)
    for _ in range(12):
        TaskFactory(campaign=campaign)
    for _ in range(8):
        services.task_lease_next_with_stats(campaign=campaign, volunteer=VolunteerFactory())
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == "auto"
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT proconfig FROM pg_proc WHERE proname = 'corroborate_ledger_chain_pending'")
        chainer_settings = cursor.fetchone()[0]
    assert any("INSERT INTO" in text and "tasks_assignment" in text for text in prepared)
    assert not any("ORDER BY t.priority DESC" in text for text in prepared)  # the walk
    assert not any("a.created_at >= " in text for text in prepared)  # the volunteer's counts
    assert chainer_settings == ["plan_cache_mode=force_custom_plan"]
