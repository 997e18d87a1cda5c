"""Sampled expert audit: a random sample of settled tasks, answered blind, measures how often the crowd was right."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tasks.models import Task
from tasks.questions import AnswerError
from tests.factories import CampaignFactory, TaskFactory, UserFactory, VolunteerFactory
from verification import selectors, services
from verification.aggregation import wilson_interval
from verification.models import AuditItem, Consensus, LedgerEntry

pytestmark = pytest.mark.django_db


def settled(campaign: Any, label: str, confidence: float = 0.97, status: str = Task.Status.RETIRED) -> Task:
    task = TaskFactory(campaign=campaign, status=status)
    Consensus.objects.create(task=task, label=label, confidence=confidence, n_answers=3, agreement=1.0)
    return task


def test_wilson_interval_is_honest_at_small_samples_and_at_the_edges() -> None:
    low, high = wilson_interval(9, 10)
    assert 0.59 < low < 0.60 and 0.98 < high < 0.99  # the textbook figures: 0.596-0.982
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] > 0.69
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(900, 1000)[1] - wilson_interval(900, 1000)[0] < 0.04


def test_a_draw_samples_only_settled_crowd_tasks_once_each_and_is_in_the_ledger() -> None:
    campaign = CampaignFactory()
    reviewer = UserFactory()
    retired = [settled(campaign, "destroyed") for _ in range(8)]
    settled(campaign, "intact", status=Task.Status.OPEN)  # not settled
    settled(campaign, "intact", status=Task.Status.ADJUDICATED)  # an expert already decided
    gold = settled(campaign, "intact")
    Task.objects.filter(pk=gold.pk).update(is_gold=True, gold_answer={"damage": "intact"})
    first = services.audit_draw(campaign=campaign, size=5, by=reviewer)
    second = services.audit_draw(campaign=campaign, size=5, by=reviewer)  # only 3 are left
    drawn = [item.task_id for item in first + second]
    assert sorted(drawn) == sorted(t.pk for t in retired) and len(second) == 3
    assert {item.crowd_label for item in first} == {"destroyed"}
    with pytest.raises(AnswerError, match="no retired task is left"):
        services.audit_draw(campaign=campaign, size=1, by=reviewer)
    with pytest.raises(AnswerError, match="between 1 and"):
        services.audit_draw(campaign=campaign, size=0, by=reviewer)
    records = [e.record for e in LedgerEntry.objects.filter(campaign=campaign).order_by("seq")]
    draws = [r for r in records if r["type"] == "audit_draw"]
    assert [len(r["tasks"]) for r in draws] == [5, 3] and draws[0]["of"] == 8
    assert services.ledger_verify(campaign=campaign) is None


def test_blind_answers_measure_the_crowd_and_are_never_edited() -> None:
    campaign = CampaignFactory()
    reviewer = UserFactory()
    for n in range(10):
        settled(campaign, "destroyed" if n < 6 else "intact", confidence=0.9)
    items = services.audit_draw(campaign=campaign, size=10, by=reviewer)
    # The experts agree with the crowd on 7 of 9 judged tasks and are unsure about one.
    answers = {item.task_id: item.crowd_label for item in items}
    ordered = sorted(answers)
    answers[ordered[0]] = "intact" if answers[ordered[0]] == "destroyed" else "destroyed"
    answers[ordered[1]] = "no_structures"
    answers[ordered[2]] = "unsure"
    while (item := selectors.audit_next(campaign)) is not None:
        services.audit_answer(item=item, label=answers[item.task_id], note="checked", by=reviewer)
    report = selectors.audit_report(campaign)
    assert (report["drawn"], report["answered"], report["unsure"], report["judged"]) == (10, 10, 1, 9)
    assert report["agree"] == 7 and report["accuracy"] == pytest.approx(7 / 9)
    assert (report["low"], report["high"]) == pytest.approx(wilson_interval(7, 9))
    assert report["mean_confidence"] == pytest.approx(0.9)
    assert sum(row["n"] for row in report["by_label"]) == 9
    assert {i.task_id for i in report["disagreements"]} == {ordered[0], ordered[1]}
    # The two contradicted tasks go back to the review queue; the agreed and the unsure ones stay retired.
    statuses = dict(Task.objects.filter(campaign=campaign).values_list("pk", "status"))
    assert {t for t, status in statuses.items() if status == Task.Status.NEEDS_REVIEW} == set(ordered[:2])
    assert "the expert audit answered no_structures" in Consensus.objects.get(task_id=ordered[1]).reason
    assert [row["task_id"] for row in selectors.review_queue(campaign)][:2] == sorted(
        ordered[:2], key=lambda t: (Consensus.objects.get(task_id=t).confidence, t)
    )
    # A late answer (a lease given before the audit) updates the crowd's consensus, not the task's status.
    late = Task.objects.select_related("campaign").get(pk=ordered[0])
    services.answer_submit(
        task=late,
        volunteer=VolunteerFactory(),
        answer={"damage": answers[ordered[0]]},
        client_id=uuid.uuid4(),
    )
    late.refresh_from_db()
    assert late.status == Task.Status.NEEDS_REVIEW
    assert "the expert audit answered" in Consensus.objects.get(task=late).reason
    done = AuditItem.objects.get(task_id=ordered[0])
    with pytest.raises(AnswerError, match="already been audited"):
        services.audit_answer(item=done, label="intact", note="", by=reviewer)
    audits = [e.record for e in LedgerEntry.objects.filter(campaign=campaign) if e.record["type"] == "audit"]
    assert len(audits) == 10 and {r["crowd_label"] for r in audits} == {"destroyed", "intact"}
    assert sorted(r["task"] for r in audits if r["sent_to_review"]) == ordered[:2]
    assert services.ledger_verify(campaign=campaign) is None


def test_a_bad_label_leaves_the_item_unanswered() -> None:
    campaign = CampaignFactory()
    settled(campaign, "destroyed")
    (item,) = services.audit_draw(campaign=campaign, size=1, by=UserFactory())
    before = LedgerEntry.objects.filter(campaign=campaign).count()
    with pytest.raises(AnswerError, match="must be one of"):
        services.audit_answer(item=item, label="burnt", note="", by=UserFactory())
    item.refresh_from_db()
    assert item.audited_at is None and item.expert_label == ""
    assert LedgerEntry.objects.filter(campaign=campaign).count() == before
