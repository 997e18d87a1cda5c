"""Evidence sets: built from filters and by hand, frozen for good, derived into new versions, all in the ledger."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.models import Task
from tests.factories import CampaignFactory, TaskFactory, UserFactory
from verification import services
from verification.models import Consensus, Decision, EvidenceItem, EvidenceSet, LedgerEntry

pytestmark = pytest.mark.django_db


def square(west: float, south: float, size: float = 0.01) -> dict[str, Any]:
    ring = [
        [west, south],
        [west + size, south],
        [west + size, south + size],
        [west, south + size],
        [west, south],
    ]
    return {"type": "Polygon", "coordinates": [ring]}


@pytest.fixture
def campaign() -> Any:
    campaign: Any = CampaignFactory(slug="darfur")
    rows = [
        ("destroyed", 0.97, Task.Status.RETIRED, 23.00),
        ("destroyed", 0.60, Task.Status.NEEDS_REVIEW, 23.02),
        ("intact", 0.99, Task.Status.RETIRED, 23.04),
        ("destroyed", 0.93, Task.Status.RETIRED, 23.50),
    ]
    for label, confidence, status, west in rows:
        task: Any = TaskFactory(
            campaign=campaign,
            status=status,
            bbox=[west, 13.0, west + 0.01, 13.01],
            footprint=square(west, 13.0),
        )
        Consensus.objects.create(
            task=task, label=label, confidence=confidence, agreement=confidence, n_answers=3
        )
    return campaign


@pytest.fixture
def reviewer() -> Any:
    return UserFactory(username="ana")


def task_ids(evidence_set: EvidenceSet) -> list[int]:
    return sorted(evidence_set.items.values_list("task_id", flat=True))


def tasks_of(campaign: Any) -> list[Task]:
    return list(Task.objects.filter(campaign=campaign).order_by("id"))


def test_filters_pick_label_and_confidence(campaign, reviewer):
    tasks = tasks_of(campaign)
    evidence_set = services.evidence_set_create(
        campaign=campaign,
        name="Destroyed",
        by=reviewer,
        filters={"labels": ["destroyed"], "min_confidence": 0.9},
    )
    assert task_ids(evidence_set) == [tasks[0].pk, tasks[3].pk]
    assert evidence_set.filters == {"labels": ["destroyed"], "min_confidence": 0.9}


def test_aoi_filter_keeps_tasks_whose_footprint_intersects(campaign, reviewer):
    tasks = tasks_of(campaign)
    aoi = {"type": "Feature", "geometry": square(22.99, 12.99, 0.04), "properties": {}}
    evidence_set = services.evidence_set_create(
        campaign=campaign, name="West", by=reviewer, filters={"labels": "destroyed", "aoi": aoi}
    )
    assert task_ids(evidence_set) == [tasks[0].pk, tasks[1].pk]


def test_a_reviewer_decision_overrides_the_crowd_label(campaign, reviewer):
    tasks = tasks_of(campaign)
    Decision.objects.create(task=tasks[2], reviewer=reviewer, label="destroyed", note="ash rings after")
    Task.objects.filter(pk=tasks[2].pk).update(status=Task.Status.ADJUDICATED)
    evidence_set = services.evidence_set_create(
        campaign=campaign,
        name="Reviewed",
        by=reviewer,
        filters={"label": "destroyed", "status": "adjudicated"},
    )
    assert task_ids(evidence_set) == [tasks[2].pk]


def test_bad_filters_are_refused_with_a_message(campaign, reviewer):
    with pytest.raises(services.EvidenceSetError, match="not valid GeoJSON"):
        services.evidence_set_create(campaign=campaign, name="Bad", by=reviewer, filters={"aoi": "{nope"})
    with pytest.raises(services.EvidenceSetError, match="unknown status"):
        services.evidence_set_create(campaign=campaign, name="Bad", by=reviewer, filters={"status": "done"})
    assert not EvidenceSet.objects.exists()


def test_manual_additions_and_removals_are_recorded(campaign, reviewer):
    tasks = tasks_of(campaign)
    evidence_set = services.evidence_set_create(campaign=campaign, name="Hand", by=reviewer)
    assert (
        services.evidence_set_add(evidence_set=evidence_set, task_ids=[tasks[1].pk, tasks[2].pk], by=reviewer)
        == 2
    )
    assert services.evidence_set_add(evidence_set=evidence_set, task_ids=[tasks[1].pk], by=reviewer) == 0
    assert services.evidence_set_remove(evidence_set=evidence_set, task_ids=[tasks[2].pk], by=reviewer) == 1
    assert task_ids(evidence_set) == [tasks[1].pk]
    assert EvidenceItem.objects.get(evidence_set=evidence_set).manual
    kinds = [e.record["type"] for e in LedgerEntry.objects.filter(campaign=campaign).order_by("seq")]
    assert kinds == ["evidence_set_created", "evidence_set_added", "evidence_set_removed"]


def test_a_task_of_another_campaign_cannot_be_added(campaign, reviewer):
    other = TaskFactory()
    evidence_set = services.evidence_set_create(campaign=campaign, name="Hand", by=reviewer)
    with pytest.raises(services.EvidenceSetError, match="not in this campaign"):
        services.evidence_set_add(evidence_set=evidence_set, task_ids=[other.pk], by=reviewer)


def test_a_frozen_set_never_changes(campaign, reviewer):
    tasks = tasks_of(campaign)
    evidence_set = services.evidence_set_create(
        campaign=campaign, name="Final", by=reviewer, filters={"labels": ["destroyed"]}
    )
    services.evidence_set_freeze(evidence_set=evidence_set, by=reviewer)
    before = task_ids(evidence_set)
    with pytest.raises(services.EvidenceSetFrozen):
        services.evidence_set_add(evidence_set=evidence_set, task_ids=[tasks[2].pk], by=reviewer)
    with pytest.raises(services.EvidenceSetFrozen):
        services.evidence_set_remove(evidence_set=evidence_set, task_ids=before, by=reviewer)
    with pytest.raises(services.EvidenceSetFrozen):
        services.evidence_set_freeze(evidence_set=evidence_set, by=reviewer)
    assert task_ids(evidence_set) == before
    frozen = LedgerEntry.objects.get(campaign=campaign, record__type="evidence_set_frozen").record
    assert [row["task"] for row in frozen["tasks"]] == before


def test_derive_copies_into_the_next_version(campaign, reviewer):
    tasks = tasks_of(campaign)
    first = services.evidence_set_create(
        campaign=campaign, name="Final", by=reviewer, filters={"labels": ["intact"]}
    )
    services.evidence_set_freeze(evidence_set=first, by=reviewer)
    second = services.evidence_set_derive(evidence_set=first, by=reviewer)
    assert (second.version, second.derived_from_id, second.frozen_at) == (2, first.pk, None)
    assert task_ids(second) == task_ids(first)
    services.evidence_set_add(evidence_set=second, task_ids=[tasks[0].pk], by=reviewer)
    assert task_ids(first) == [tasks[2].pk]
    third = services.evidence_set_derive(evidence_set=first, by=reviewer)
    assert third.version == 3


def test_names_are_unique_per_campaign(campaign, reviewer):
    services.evidence_set_create(campaign=campaign, name="Final", by=reviewer)
    with pytest.raises(services.EvidenceSetError, match="already exists"):
        services.evidence_set_create(campaign=campaign, name="Final", by=reviewer)
