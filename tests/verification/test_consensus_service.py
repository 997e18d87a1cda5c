"""Tests of the consensus services in the database: incremental updates, retirement, refits, schedule."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any, cast

import pytest
from django.utils import translation
from django_q.models import Schedule

from tasks.models import Campaign, Task, Volunteer
from tests.factories import CampaignFactory, TaskFactory, UserFactory, VolunteerFactory
from verification import reasons
from verification.jobs import refit_all_campaigns
from verification.models import Consensus, VolunteerReliability
from verification.services import (
    answer_submit,
    audit_answer,
    audit_draw,
    consensus_recompute_campaign,
    consensus_update_task,
    decision_record,
)

pytestmark = pytest.mark.django_db


def new_campaign(**fields: Any) -> Campaign:
    return cast(Campaign, CampaignFactory(**fields))


def new_task(campaign: Campaign) -> Task:
    return cast(Task, TaskFactory(campaign=campaign))


def new_volunteer() -> Volunteer:
    return cast(Volunteer, VolunteerFactory())


def answer(task: Task, volunteer: Volunteer, value: str) -> None:
    answer_submit(task=task, volunteer=volunteer, answer={"damage": value}, client_id=uuid.uuid4())


def test_unanimous_answers_retire_at_the_minimum() -> None:
    campaign = new_campaign(min_answers=3, max_answers=10)
    task = new_task(campaign)
    for n in range(3):
        task.refresh_from_db()
        assert task.status == Task.Status.OPEN, f"retired after only {n} answers"
        answer(task, new_volunteer(), "destroyed")
    task.refresh_from_db()
    consensus = Consensus.objects.get(task=task)
    assert task.status == Task.Status.RETIRED
    assert consensus.label == "destroyed" and consensus.n_answers == 3
    assert consensus.confidence >= campaign.retirement_confidence


def test_a_campaign_asking_for_one_answer_retires_on_a_confident_one() -> None:
    campaign = new_campaign(min_answers=1, max_answers=3, retirement_confidence=0.6)
    task = new_task(campaign)
    answer(task, new_volunteer(), "destroyed")  # 0.7 at the default reliability
    task.refresh_from_db()
    assert task.status == Task.Status.RETIRED
    # Once a second answer has come (even an unsure one), the two-vote lead applies again.
    other = new_task(campaign)
    answer(other, new_volunteer(), "unsure")
    answer(other, new_volunteer(), "destroyed")
    other.refresh_from_db()
    assert other.status == Task.Status.OPEN
    assert "a lead of 1 vote(s) (needs 2)" in Consensus.objects.get(task=other).reason


def test_one_dissent_in_three_keeps_the_task_open() -> None:
    campaign = new_campaign(min_answers=3, max_answers=10)
    task = new_task(campaign)
    for value in ("destroyed", "destroyed", "intact"):
        answer(task, new_volunteer(), value)
    task.refresh_from_db()
    assert task.status == Task.Status.OPEN
    consensus = Consensus.objects.get(task=task)
    assert consensus.label == "destroyed"
    assert "a lead of 1 vote(s) (needs 2)" in consensus.reason


def test_a_task_that_took_long_to_agree_needs_more_confidence_to_retire() -> None:
    # Default weights (0.7 each, temperature 1, three classes): 4 against 2 gives confidence 0.954,
    # enough at three answers but not at six (0.9875 needed); 6 against 2 gives 0.998 and retires at
    # eight (0.993 needed).
    campaign = new_campaign(min_answers=3, max_answers=10, retirement_confidence=0.95)
    task = new_task(campaign)
    for value in ("intact", "destroyed", "intact", "destroyed", "destroyed", "destroyed"):
        answer(task, new_volunteer(), value)
    task.refresh_from_db()
    consensus = Consensus.objects.get(task=task)
    assert task.status == Task.Status.OPEN
    assert 0.95 < consensus.confidence < 0.9875
    assert "needs 0.988" in consensus.reason
    for _ in range(2):
        answer(task, new_volunteer(), "destroyed")
    task.refresh_from_db()
    assert task.status == Task.Status.RETIRED
    assert "threshold 0.993 after 8 answers" in Consensus.objects.get(task=task).reason


def test_a_settled_task_below_the_threshold_goes_to_review_without_more_answers() -> None:
    # Three to nothing with two answers left at most: nothing can change the label, but the researcher
    # asks 0.99 and three answers at the default reliability give 0.98.  The two answers would only cost
    # volunteers' time: the task goes to review now.  With ten answers allowed it keeps collecting.
    settled = new_task(new_campaign(min_answers=3, max_answers=5, retirement_confidence=0.99))
    open_ended = new_task(new_campaign(min_answers=3, max_answers=10, retirement_confidence=0.99))
    for task in (settled, open_ended):
        for _ in range(3):
            answer(task, new_volunteer(), "destroyed")
        task.refresh_from_db()
    consensus = Consensus.objects.get(task=settled)
    assert settled.status == Task.Status.NEEDS_REVIEW
    assert 0.97 < consensus.confidence < 0.99
    assert "label settled" in consensus.reason and "probability 0.000" in consensus.reason
    assert open_ended.status == Task.Status.OPEN
    assert "collecting answers: 3 so far" in Consensus.objects.get(task=open_ended).reason


SEEN = {
    "primary": "seen",
    "questions": [
        {
            "key": "seen",
            "type": "multiple",
            "text": "What do you see?",
            "choices": [
                {"value": "fire", "label": "Fire"},
                {"value": "smoke", "label": "Smoke"},
                {"value": "people", "label": "People"},
                {"value": "unsure", "label": "Not sure"},
            ],
        }
    ],
}


def test_a_multiple_choice_primary_question_reaches_a_consensus_on_the_set_of_options() -> None:
    """Its consensus label is the set of options chosen ('fire+smoke'); before, every answer failed."""
    from tasks.questions import primary_labels

    campaign = new_campaign(question_set=SEEN, min_answers=3, max_answers=6)
    labels = [value for value, _ in primary_labels(SEEN)]
    assert labels[:3] == ["fire", "smoke", "people"] and len(labels) == 2**3 - 1 + 1  # the sets, then unsure
    assert "fire+people+smoke" in labels and labels[-1] == "unsure"
    task = new_task(campaign)
    for seen in (["smoke", "fire"], ["fire", "smoke"], ["fire", "smoke", "unsure"]):
        answer_submit(task=task, volunteer=new_volunteer(), answer={"seen": seen}, client_id=uuid.uuid4())
    task.refresh_from_db()
    consensus = Consensus.objects.get(task=task)
    assert (task.status, consensus.label, consensus.n_answers) == (Task.Status.RETIRED, "fire+smoke", 3)
    other = new_task(campaign)
    for seen in (["fire"], ["unsure"], ["people"], ["fire"]):
        answer_submit(task=other, volunteer=new_volunteer(), answer={"seen": seen}, client_id=uuid.uuid4())
    assert Consensus.objects.get(task=other).label == "fire"
    summary = consensus_recompute_campaign(campaign=campaign)
    assert summary["answers"] == 7 and Consensus.objects.get(task=task).label == "fire+smoke"
    decision = decision_record(task=other, reviewer=UserFactory(), label="fire+people", note="two figures")
    assert decision.label == "fire+people"


def test_disagreement_up_to_max_answers_goes_to_review() -> None:
    campaign = new_campaign(min_answers=3, max_answers=4)
    task = new_task(campaign)
    for value in ("destroyed", "intact", "destroyed", "intact"):
        answer(task, new_volunteer(), value)
    task.refresh_from_db()
    assert task.status == Task.Status.NEEDS_REVIEW
    assert "expert review" in Consensus.objects.get(task=task).reason


def test_a_split_task_at_its_maximum_says_the_split_sent_it_to_review_not_the_confidence() -> None:
    # Two volunteers the model trusts against two it trusts less: confident, but two against two.
    campaign = new_campaign(min_answers=3, max_answers=4)
    task = new_task(campaign)
    for value, reliability in (("destroyed", 0.6), ("intact", 0.99), ("destroyed", 0.6), ("intact", 0.99)):
        volunteer = new_volunteer()
        VolunteerReliability.objects.create(
            campaign=campaign, volunteer=volunteer, reliability=reliability, n_answers=50
        )
        answer(task, volunteer, value)
    task.refresh_from_db()
    consensus = Consensus.objects.get(task=task)
    assert task.status == Task.Status.NEEDS_REVIEW
    assert consensus.label == "intact" and consensus.confidence > 0.99
    assert "split with a lead of 0 vote(s) (needs 2)" in consensus.reason
    assert "without reaching confidence" not in consensus.reason
    # The case and its figures are kept, to say the reason again in the reader's language.
    assert consensus.reason_params["key"] == "split_at_max"
    assert (consensus.reason_params["n"], consensus.reason_params["margin"]) == (4, 0)
    assert reasons.reason_text(consensus.reason, consensus.reason_params) == consensus.reason
    with translation.override("fr"):
        french = reasons.reason_text(consensus.reason, consensus.reason_params)
    assert french.startswith(
        "4 réponses (le maximum est 4) partagées avec une avance de 0 voix (il en faut 2)"
    )
    assert french.endswith(": envoyée en revue experte")


def test_every_reason_reads_the_same_in_english_from_its_figures_and_is_translated() -> None:
    """Each case's sentence is what the retirement rule stored; French says it with the same figures; a
    reason stored before cases were kept (no figures) or with figures that do not fit reads as stored."""
    figures = {
        "confidence": 0.97312,
        "n": 5,
        "min": 3,
        "max": 10,
        "threshold": 0.95,
        "needed": 0.961,
        "remaining": 5,
        "change": 0.0123,
        "margin": 1,
        "lead": 2,
    }
    for key in reasons.TEMPLATES:
        text, params = reasons.reason(
            key, **({"label": "destroyed", "crowd": "intact"} if key == "audit" else figures)
        )
        assert reasons.reason_text(text, params) == text and "%" not in text
        with translation.override("fr"):
            french = reasons.reason_text(text, params)
        assert french != text and "%" not in french, key
        for figure in ("0.973", "0.950", "0.012") if key in ("settled", "settled_low") else ():
            assert figure in text and figure in french
    assert reasons.reason_text("an old reason", {}) == "an old reason"
    assert reasons.reason_text("an old reason", {"key": "reached", "n": 3}) == "an old reason"
    assert reasons.reason_text("an old reason", {"key": "no such case"}) == "an old reason"


def test_blocked_volunteers_answers_stop_counting() -> None:
    campaign = new_campaign(min_answers=3, max_answers=10)
    task = new_task(campaign)
    spammer = new_volunteer()
    answer(task, spammer, "intact")
    answer(task, new_volunteer(), "destroyed")
    VolunteerReliability.objects.filter(campaign=campaign, volunteer=spammer).update(blocked=True)
    consensus = consensus_update_task(task=Task.objects.select_related("campaign").get(pk=task.pk))
    assert consensus.n_answers == 1
    assert consensus.label == "destroyed"
    # Blocked site-wide: that volunteer's answers stop counting in every campaign.
    banned = new_volunteer()
    answer(task, banned, "intact")
    assert consensus_update_task(task=task).n_answers == 2
    Volunteer.objects.filter(pk=banned.pk).update(is_blocked=True)
    consensus = consensus_update_task(task=Task.objects.select_related("campaign").get(pk=task.pk))
    assert (consensus.n_answers, consensus.label) == (1, "destroyed")


def test_refit_flags_a_volunteer_who_always_disagrees() -> None:
    campaign = new_campaign(min_answers=3, max_answers=10)
    honest = [new_volunteer() for _ in range(4)]
    contrarian = new_volunteer()
    for n in range(12):
        task = new_task(campaign)
        truth, wrong = ("destroyed", "intact") if n % 2 else ("intact", "no_structures")
        answer(task, contrarian, wrong)
        for volunteer in honest:
            task.refresh_from_db()
            if task.status != Task.Status.OPEN:
                break
            answer(task, volunteer, truth)
    summary = consensus_recompute_campaign(campaign=campaign)
    flagged = VolunteerReliability.objects.get(campaign=campaign, volunteer=contrarian)
    assert flagged.flagged and summary["flagged"] == 1
    assert not VolunteerReliability.objects.filter(volunteer__in=honest, flagged=True).exists()
    assert flagged.reliability < VolunteerReliability.objects.get(volunteer=honest[0]).reliability
    campaign.refresh_from_db()
    assert set(campaign.aggregation_state) >= {"class_prior", "temperature", "refit_at"}


def test_experts_labels_teach_the_refit_who_is_reliable() -> None:
    """Two volunteers disagree on every task, so the answers alone cannot say who is right.  Once reviewers
    have decided four tasks and an audit has answered two, the refit trusts the volunteer the experts agreed
    with, and the crowd's consensus on the decided tasks stays what the crowd said."""
    campaign = new_campaign(min_answers=3, max_answers=10)
    sharp, dull = new_volunteer(), new_volunteer()
    reviewer = UserFactory()
    tasks = []
    for n in range(12):
        task = new_task(campaign)
        truth, other = ("destroyed", "intact") if n % 2 else ("intact", "destroyed")
        answer(task, sharp, truth)
        answer(task, dull, other)
        tasks.append((task, truth))
    blind = consensus_recompute_campaign(campaign=campaign)
    assert blind["expert_labels"] == {"gold_tasks": 0, "audits": 0, "decisions": 0}
    reliability = dict(
        VolunteerReliability.objects.filter(campaign=campaign).values_list("volunteer_id", "reliability")
    )
    assert reliability[sharp.pk] == pytest.approx(reliability[dull.pk], abs=0.05)

    before = {t.pk: Consensus.objects.get(task=t).label for t, _ in tasks[:4]}
    for task, truth in tasks[:4]:
        decision_record(task=task, reviewer=reviewer, label=truth, note="seen on the after image")
    decision_record(task=tasks[4][0], reviewer=reviewer, label="unsure", note="cannot tell")
    # No answer came since the last refit: the periodic job refits for the decisions alone.
    (summary,) = refit_all_campaigns()

    assert summary["expert_labels"] == {"gold_tasks": 0, "audits": 0, "decisions": 4}
    reliability = dict(
        VolunteerReliability.objects.filter(campaign=campaign).values_list("volunteer_id", "reliability")
    )
    assert reliability[sharp.pk] > 0.75 > 0.25 > reliability[dull.pk]
    for task, truth in tasks[5:]:
        assert Consensus.objects.get(task=task).label == truth
    for task, _ in tasks[:4]:
        task.refresh_from_db()
        assert task.status == Task.Status.ADJUDICATED
        assert Consensus.objects.get(task=task).label == before[task.pk]

    # The sampled audit's answers count too (as gold: they also calibrate), its unsure ones not.
    Task.objects.filter(pk__in=[t.pk for t, _ in tasks[5:8]]).update(status=Task.Status.RETIRED)
    items = audit_draw(campaign=campaign, size=3, by=reviewer)
    assert refit_all_campaigns() == []  # nothing new since
    for item, label in zip(items, ["unsure", "intact", "destroyed"], strict=True):
        audit_answer(item=item, label=label, note="checked", by=reviewer)
    (summary,) = refit_all_campaigns()
    assert summary["expert_labels"] == {"gold_tasks": 0, "audits": 2, "decisions": 4}


def test_refit_job_only_refits_live_campaigns_with_new_answers() -> None:
    fresh = new_campaign()
    idle = new_campaign()
    paused = new_campaign()
    for campaign in (fresh, idle, paused):
        answer(new_task(campaign), new_volunteer(), "intact")
    consensus_recompute_campaign(campaign=idle)
    Campaign.objects.filter(pk=paused.pk).update(status=Campaign.Status.PAUSED)
    assert [s["campaign"] for s in refit_all_campaigns()] == [fresh.slug]
    assert refit_all_campaigns() == []  # nothing new since
    answer(TaskFactory(campaign=idle), new_volunteer(), "destroyed")
    assert [s["campaign"] for s in refit_all_campaigns()] == [idle.slug]


def test_refit_schedule_exists_after_migrations() -> None:
    schedule = Schedule.objects.get(name="refit-consensus")
    assert schedule.func == "verification.jobs.refit_all_campaigns"
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 5 and schedule.repeats < 0


def test_incremental_update_of_a_ten_answer_task_is_fast() -> None:
    # The issue asks for this one timed test: consensus_update_task runs inside every answer's
    # transaction, so it must stay well under 100 ms.  The bound leaves a wide margin (typically ~5 ms).
    campaign = new_campaign(min_answers=3, max_answers=20, retirement_confidence=0.999)
    task = new_task(campaign)
    for n in range(10):
        answer(task, new_volunteer(), ("destroyed", "intact")[n % 2])
    task = Task.objects.select_related("campaign").get(pk=task.pk)
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        consensus_update_task(task=task)
        timings.append(time.perf_counter() - started)
    assert Consensus.objects.get(task=task).n_answers == 10
    assert statistics.median(timings) < 0.1


def test_aggregate_command_recomputes_a_campaign() -> None:
    import uuid

    from tests.conftest import run_command
    from tests.factories import CampaignFactory, TaskFactory, VolunteerFactory
    from verification.models import Consensus
    from verification.services import answer_submit

    campaign = CampaignFactory(slug="refit-me", min_answers=3, max_answers=5)
    tasks = [TaskFactory(campaign=campaign) for _ in range(4)]
    volunteers = [VolunteerFactory() for _ in range(3)]
    for task in tasks:
        for volunteer in volunteers:
            answer_submit(
                task=task, volunteer=volunteer, answer={"damage": "destroyed"}, client_id=uuid.uuid4()
            )
    code, summary, err = run_command("aggregate", "--campaign", "refit-me")
    assert code == 0, err
    assert summary is not None and summary["campaign"] == "refit-me"
    assert summary["tasks"] == 4 and summary["answers"] == 12 and summary["volunteers"] == 3
    assert set(Consensus.objects.filter(task__campaign=campaign).values_list("label", flat=True)) == {
        "destroyed"
    }
    code, _, err = run_command("aggregate", "--campaign", "no-such-campaign")
    assert code != 0 and err.startswith("error: ")


def test_a_task_answered_while_the_refit_runs_keeps_the_consensus_of_its_newest_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The refit's figures for a task answered after the fit read the campaign are stale: the write-back
    leaves that task's incremental consensus (and a decision made meanwhile) alone, and writes the others."""
    from verification import aggregation
    from verification import services as verification_services

    campaign = new_campaign(min_answers=3, max_answers=10)
    volunteers = [new_volunteer() for _ in range(3)]
    late, decided, quiet = new_task(campaign), new_task(campaign), new_task(campaign)
    for task in (late, decided, quiet):
        for volunteer, value in zip(volunteers[:2], ("destroyed", "intact"), strict=True):
            answer(task, volunteer, value)
    real_aggregate = aggregation.aggregate

    def aggregate_while_volunteers_answer(*args: Any, **kwargs: Any) -> Any:
        fitted = real_aggregate(*args, **kwargs)
        answer(late, volunteers[2], "destroyed")  # arrives after the read, before the write-back
        decision_record(task=decided, reviewer=UserFactory(), label="intact", note="seen on the after image")
        return fitted

    monkeypatch.setattr(verification_services.aggregation, "aggregate", aggregate_while_volunteers_answer)
    summary = consensus_recompute_campaign(campaign=campaign)

    assert summary["answers"] == 6 and summary["changed_during_refit"] == 2
    newest = Consensus.objects.get(task=late)
    assert (newest.method, newest.n_answers) == ("incremental", 3)
    decided.refresh_from_db()
    assert decided.status == Task.Status.ADJUDICATED
    assert Consensus.objects.get(task=quiet).method == "auto"
    campaign.refresh_from_db()
    assert campaign.aggregation_state["refit_at"] <= newest.updated_at.isoformat()
    # The next refit counts the late answer.
    monkeypatch.setattr(verification_services.aggregation, "aggregate", real_aggregate)
    assert [s["answers"] for s in refit_all_campaigns()] == [7]
    assert Consensus.objects.get(task=late).method == "auto"


def test_a_refit_of_volunteers_it_cannot_tell_apart_counts_them_all_the_same() -> None:
    """Thirty volunteers all right 70%, three answers a task, fifteen answers each: the refit keeps one
    accuracy for all of them (aggregation._prefers_common_accuracy), stores the same reliability for
    each, records it in the campaign's state and says so in the package's methodology."""
    import numpy as np

    from verification.services import _methodology

    campaign = new_campaign(min_answers=3, max_answers=3)
    volunteers = [new_volunteer() for _ in range(30)]
    rng = np.random.default_rng(3)
    choices = ["destroyed", "intact", "no_structures"]
    for _ in range(150):
        task = new_task(campaign)
        truth = int(rng.integers(0, 3))
        for index in rng.choice(30, 3, replace=False):
            value = truth if rng.random() < 0.7 else (truth + int(rng.integers(1, 3))) % 3
            answer(task, volunteers[index], choices[value])
    consensus_recompute_campaign(campaign=campaign)
    campaign.refresh_from_db()
    assert campaign.aggregation_state["common_accuracy"] is True
    reliabilities = list(
        VolunteerReliability.objects.filter(campaign=campaign).values_list("reliability", flat=True)
    )
    assert len(reliabilities) == 30 and max(reliabilities) - min(reliabilities) < 0.05, reliabilities
    stats = {
        "agreement": [], "confidence": [], "tasks": 150, "answers": 450, "volunteers": 30, "decisions": 0,
        "sources": 1, "media_files": 1, "method_counts": {}, "software": "test", "status_counts": {},
        "label_counts": {}, "points": 0, "missing_media": 0,
    }  # fmt: skip
    text = _methodology(
        campaign=campaign, scope="whole campaign", stats=stats, head_hash="0" * 64, head_seq=1
    )
    assert "the volunteers could not be told apart" in text


def test_a_refit_flags_volunteers_whose_gold_answers_are_at_chance() -> None:
    """Thirty volunteers right 70% and two answering at random, three answers a task, forty gold answers
    each: the refit flags the two random answerers and nobody else (aggregation._chance_on_gold), their
    reliability is at chance, and the campaign's state records how many; when the others share one
    accuracy, the package's methodology says that their answers were given no weight."""
    import numpy as np

    from verification.services import _methodology

    campaign = new_campaign(min_answers=3, max_answers=3)
    volunteers = [new_volunteer() for _ in range(32)]
    accuracy = [0.7] * 30 + [1 / 3] * 2
    rng = np.random.default_rng(5)
    choices = ["destroyed", "intact", "no_structures"]

    def give(task: Task, index: int, truth: int) -> None:
        right = rng.random() < accuracy[index]
        answer(task, volunteers[index], choices[truth if right else (truth + int(rng.integers(1, 3))) % 3])

    gold_truth = [int(t) for t in rng.integers(0, 3, 50)]
    gold_tasks = [
        TaskFactory(campaign=campaign, is_gold=True, gold_answer={"damage": choices[t]}) for t in gold_truth
    ]
    for index in range(32):
        for g in rng.choice(50, 40, replace=False):
            give(gold_tasks[g], index, gold_truth[g])
    for _ in range(150):
        task, truth = new_task(campaign), int(rng.integers(0, 3))
        for index in rng.choice(32, 3, replace=False):
            give(task, int(index), truth)
    consensus_recompute_campaign(campaign=campaign)
    campaign.refresh_from_db()
    assert campaign.aggregation_state["at_chance_on_gold"] == 2, campaign.aggregation_state
    rows = {r.volunteer_id: r for r in VolunteerReliability.objects.filter(campaign=campaign)}
    assert [rows[v.pk].flagged for v in volunteers] == [False] * 30 + [True] * 2
    assert max(rows[v.pk].reliability for v in volunteers[30:]) < 0.45
    stats = {
        "agreement": [], "confidence": [], "tasks": 200, "answers": 1730, "volunteers": 32, "decisions": 0,
        "sources": 1, "media_files": 1, "method_counts": {}, "software": "test", "status_counts": {},
        "label_counts": {}, "points": 0, "missing_media": 0,
    }  # fmt: skip
    campaign.aggregation_state = {**campaign.aggregation_state, "common_accuracy": True}
    text = _methodology(
        campaign=campaign, scope="whole campaign", stats=stats, head_hash="0" * 64, head_seq=1
    )
    assert "except 2 whose gold answers were those of someone answering at random" in text
