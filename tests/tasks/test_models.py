"""Database constraints of the core models."""

from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from tasks.models import Campaign, Task
from tasks.questions import AnswerError, validate_answer
from tests.factories import CampaignFactory, TaskFactory, VolunteerFactory
from verification.models import Answer, ImmutableError

pytestmark = pytest.mark.django_db


def _answer(task: Task, volunteer, label: str = "intact", **extra) -> Answer:
    return Answer.objects.create(
        task=task,
        volunteer=volunteer,
        campaign=task.campaign,
        answer={"damage": label},
        label=label,
        client_id=extra.get("client_id", uuid.uuid4()),
    )


def test_duplicate_answer_by_one_volunteer_is_refused_by_the_database():
    task = TaskFactory()
    volunteer = VolunteerFactory()
    _answer(task, volunteer)
    with pytest.raises(IntegrityError), transaction.atomic():
        _answer(task, volunteer, "destroyed")
    assert Answer.objects.filter(task=task).count() == 1


def test_answers_cannot_be_edited_or_deleted():
    answer = _answer(TaskFactory(), VolunteerFactory())
    answer.label = "destroyed"
    with pytest.raises(ImmutableError):
        answer.save()
    with pytest.raises(ImmutableError):
        answer.delete()
    answer.refresh_from_db()
    assert answer.label == "intact"


def test_answer_is_validated_against_the_question_set():
    campaign = CampaignFactory()
    assert validate_answer(campaign.question_set, {"damage": "destroyed"}) == {"damage": "destroyed"}
    with pytest.raises(AnswerError) as excinfo:
        validate_answer(campaign.question_set, {"damage": "flattened"})
    assert excinfo.value.field == "damage"
    with pytest.raises(AnswerError) as excinfo:
        validate_answer(campaign.question_set, {"note": "no primary"})
    assert excinfo.value.field == "damage"
    with pytest.raises(AnswerError):
        validate_answer(campaign.question_set, {"damage": "intact", "marks": [[10, "x"]]})


def test_campaign_rejects_max_answers_below_min():
    with pytest.raises(IntegrityError), transaction.atomic():
        CampaignFactory(min_answers=5, max_answers=3)


def test_campaign_question_set_is_validated_on_full_clean():
    campaign = Campaign(
        slug="bad-qs", title="x", kind="imagery", question_set={"primary": "a", "questions": []}
    )
    with pytest.raises(ValidationError):
        campaign.full_clean()


def test_gold_task_needs_an_expert_answer():
    with pytest.raises(IntegrityError), transaction.atomic():
        TaskFactory(is_gold=True, gold_answer=None)


def test_task_keys_are_unique_within_a_campaign():
    task = TaskFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        TaskFactory(campaign=task.campaign, source=task.source, key=task.key)


def test_video_segment_time_range_must_be_ordered():
    with pytest.raises(IntegrityError), transaction.atomic():
        TaskFactory(kind=Task.Kind.SEGMENT, start_seconds=5.0, end_seconds=2.0)


def test_labels_read_as_the_question_set_names_them():
    from tasks.questions import IMAGERY_QUESTION_SET, label_name, label_names

    names = label_names(IMAGERY_QUESTION_SET)
    assert label_name(names, "destroyed") == "Structures destroyed"
    assert label_name(names, "unsure") == "Unsure"
    assert label_name(names, "destroyed+intact") == "Structures destroyed + Structures intact"
    assert label_name(names, "burnt") == "burnt"  # a choice since removed reads as itself
    assert label_name(names, "burnt+intact") == "burnt+intact"
    assert label_name(names, None) == "" and label_name(names, "") == ""
    assert label_names({"primary": "gone", "questions": []}) == {}
