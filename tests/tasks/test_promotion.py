"""Staged campaigns: tasks whose consensus matches a rule are promoted into a follow-up campaign, once."""

from __future__ import annotations

from typing import Any

import pytest

from tasks import services
from tasks.models import Campaign, Task
from tests.factories import CampaignFactory, TaskFactory, UserFactory
from verification.models import Consensus, LedgerEntry

pytestmark = pytest.mark.django_db

FOLLOW_UP_QUESTIONS = {
    "primary": "count",
    "questions": [
        {
            "key": "count",
            "type": "single",
            "text": "How many structures?",
            "choices": [{"value": "few", "label": "1-10"}, {"value": "many", "label": "More than 10"}],
        }
    ],
}


@pytest.fixture
def stage_one() -> Any:
    campaign: Any = CampaignFactory(slug="stage-1")
    for label, confidence in [
        ("intact", 0.98),
        ("intact", 0.55),
        ("no_structures", 0.99),
        ("destroyed", 0.97),
    ]:
        task: Any = TaskFactory(
            campaign=campaign, media={"before": "tiles/x.jpg"}, footprint={"type": "Point"}
        )
        Consensus.objects.create(task=task, label=label, confidence=confidence, n_answers=3)
    return campaign


@pytest.fixture
def stage_two() -> Any:
    return CampaignFactory(slug="stage-2", question_set=FOLLOW_UP_QUESTIONS)


def test_matching_tasks_are_copied_with_their_media(stage_one, stage_two):
    summary = services.campaign_promote(
        source_campaign=stage_one,
        target_campaign=stage_two,
        rule={"labels": ["intact"], "min_confidence": 0.9},
    )
    assert summary["tasks_created"] == 1
    original = Task.objects.get(campaign=stage_one, consensus__label="intact", consensus__confidence=0.98)
    copy = Task.objects.get(campaign=stage_two)
    assert copy.key == f"promoted:{original.pk}"
    assert copy.promoted_from_id == original.pk
    assert (copy.source_id, copy.bbox, copy.media, copy.footprint) == (
        original.source_id,
        original.bbox,
        original.media,
        original.footprint,
    )
    assert copy.status == Task.Status.OPEN and copy.answer_count == 0
    stage_two.refresh_from_db()
    assert stage_two.parent_id == stage_one.pk
    assert stage_two.promotion_rule == {"labels": ["intact"], "min_confidence": 0.9}
    entry = LedgerEntry.objects.get(campaign=stage_two, record__type="tasks_promoted")
    assert entry.record["source_tasks"] == [original.pk]


def test_promotion_is_idempotent(stage_one, stage_two):
    rule = {"labels": ["intact", "destroyed"]}
    assert (
        services.campaign_promote(source_campaign=stage_one, target_campaign=stage_two, rule=rule)[
            "tasks_created"
        ]
        == 3
    )
    again = services.campaign_promote(source_campaign=stage_one, target_campaign=stage_two, rule=rule)
    assert again == {**again, "matching": 3, "tasks_created": 0}
    assert Task.objects.filter(campaign=stage_two).count() == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": Campaign.Kind.VIDEO}, "same kind"),
        ({"parent": "other"}, "another campaign"),
    ],
)
def test_promotion_refuses_an_unsuitable_target(stage_one, stage_two, change: dict[str, Any], message: str):
    if change.get("parent"):
        stage_two.parent = CampaignFactory()
    else:
        stage_two.kind = change["kind"]
    stage_two.save()
    with pytest.raises(services.IngestError, match=message):
        services.campaign_promote(
            source_campaign=stage_one, target_campaign=stage_two, rule={"labels": ["intact"]}
        )
    assert not Task.objects.filter(campaign=stage_two).exists()


def test_promotion_needs_a_rule_and_another_campaign(stage_one, stage_two):
    with pytest.raises(services.IngestError, match="at least one condition"):
        services.campaign_promote(source_campaign=stage_one, target_campaign=stage_two, rule={})
    with pytest.raises(services.IngestError, match="itself"):
        services.campaign_promote(
            source_campaign=stage_one, target_campaign=stage_one, rule={"labels": ["intact"]}
        )


def test_promotion_records_who_ran_it(stage_one, stage_two):
    user = UserFactory(username="lead")
    services.campaign_promote(
        source_campaign=stage_one, target_campaign=stage_two, rule={"labels": ["intact"]}, by=user
    )
    assert LedgerEntry.objects.get(campaign=stage_two, record__type="tasks_promoted").record["by"] == "lead"
