"""Writes for answers, consensus, reliability, adjudication, evidence sets and the ledger."""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from tasks.models import Assignment, Campaign, Task, Volunteer
from tasks.questions import UNSURE, AnswerError, primary_label, validate_answer
from verification import aggregation, ledger
from verification.models import Answer, Consensus, Decision, LedgerEntry, LedgerHead, VolunteerReliability

logger = logging.getLogger("corroborate.verification")

DEFAULT_RELIABILITY = 0.7


class AnswerConflict(Exception):
    """The volunteer already answered this task (with another client_id), or reused a client_id."""


class TaskNotAnswerable(Exception):
    """The task cannot take this answer (campaign not live, task full)."""


# ---------------------------------------------------------------- ledger


def ledger_append(*, campaign: Campaign, record: dict[str, Any]) -> LedgerEntry:
    """Append one record to the campaign's hash chain, in the caller's transaction.

    The head row is locked (SELECT ... FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE transactions already
    serialise writers), so concurrent appends still form a single chain.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("ledger_append must run inside the transaction of the change it records")
    record = {**record, "at": record.get("at") or timezone.now().isoformat()}
    head, _ = LedgerHead.objects.get_or_create(campaign=campaign)
    head = LedgerHead.objects.select_for_update().get(pk=head.pk)
    seq = head.seq + 1
    entry = LedgerEntry(
        campaign=campaign,
        seq=seq,
        prev_hash=head.head_hash,
        entry_hash=ledger.entry_hash(head.head_hash, record),
        record=record,
    )
    entry.save()
    LedgerHead.objects.filter(pk=head.pk).update(seq=seq, head_hash=entry.entry_hash)
    return entry


def volunteer_commitment(*, campaign: Campaign, volunteer: Volunteer) -> str:
    """A salted hash of the volunteer's id: links a volunteer's ledger entries without revealing who they are."""
    return hashlib.sha256(f"{campaign.ledger_salt}:{volunteer.public_id}".encode()).hexdigest()[:32]


# ---------------------------------------------------------------- answers


def answer_submit(
    *,
    task: Task,
    volunteer: Volunteer,
    answer: Any,
    client_id: uuid.UUID,
    duration_ms: int | None = None,
) -> tuple[Answer, bool]:
    """Record a volunteer's answer; returns (answer, created). Idempotent by client_id.

    Raises AnswerError (invalid), AnswerConflict (already answered differently) or TaskNotAnswerable.
    """
    with transaction.atomic():
        existing = Answer.objects.filter(volunteer=volunteer, client_id=client_id).first()
        if existing is not None:
            if existing.task_id != task.pk:
                raise AnswerConflict("this client_id was already used for another task")
            return existing, False
        # Lock the task row: answer counts, retirement and the open-slot rule all hinge on it.
        task = Task.objects.select_for_update().select_related("campaign").get(pk=task.pk)
        campaign = task.campaign
        if Answer.objects.filter(task=task, volunteer=volunteer).exists():
            raise AnswerConflict("you already answered this task")
        if campaign.status != Campaign.Status.LIVE:
            raise TaskNotAnswerable(
                f"campaign {campaign.slug} is {campaign.status} and does not accept answers"
            )
        normalised = validate_answer(campaign.question_set, answer, tile_size_px=_tile_size(task))
        # Even a lease holder is refused once the task is full: an expired lease's slot may have been
        # given to someone else, and a task never takes more than max_answers.
        if not task.is_gold and task.answer_count >= campaign.max_answers:
            raise TaskNotAnswerable("this task already has all the answers it needs")
        label = primary_label(campaign.question_set, normalised) or ""
        created = Answer.objects.create(
            task=task,
            volunteer=volunteer,
            campaign=campaign,
            answer=normalised,
            label=label,
            client_id=client_id,
            duration_ms=duration_ms,
        )
        now = timezone.now()
        Assignment.objects.update_or_create(
            task=task,
            volunteer=volunteer,
            defaults={"campaign": campaign, "state": Assignment.State.ANSWERED, "expires_at": now},
            create_defaults={
                "campaign": campaign,
                "state": Assignment.State.ANSWERED,
                "leased_at": now,
                "expires_at": now,
            },
        )
        task.answer_count += 1
        if normalised.get("graphic") == "yes" and not task.flags.get("graphic"):
            # One report is enough to protect the next volunteers: the segment is blurred until they choose.
            task.flags = {**task.flags, "graphic": True}
            Task.objects.filter(pk=task.pk).update(answer_count=task.answer_count, flags=task.flags)
        else:
            Task.objects.filter(pk=task.pk).update(answer_count=task.answer_count)
        reliability = _reliability_after_answer(
            campaign=campaign, volunteer=volunteer, task=task, label=label
        )
        if not task.is_gold:
            consensus_update_task(task=task)
        ledger_append(
            campaign=campaign,
            record={
                "type": "answer",
                "task": task.pk,
                "answer_id": created.pk,
                "volunteer": volunteer_commitment(campaign=campaign, volunteer=volunteer),
                "answer": normalised,
                "client_id": str(client_id),
                "at": created.created_at.isoformat(),
            },
        )
        logger.info(
            "answer recorded", extra={"task": task.pk, "campaign": campaign.slug, "reliability": reliability}
        )
        return created, True


def _tile_size(task: Task) -> tuple[int, int] | None:
    if task.window and "width" in task.window:
        return int(task.window["width"]), int(task.window["height"])
    return None


def _reliability_after_answer(*, campaign: Campaign, volunteer: Volunteer, task: Task, label: str) -> float:
    stats, _ = VolunteerReliability.objects.get_or_create(campaign=campaign, volunteer=volunteer)
    stats.n_answers += 1
    if task.is_gold and task.gold_answer and label != UNSURE:
        stats.n_gold += 1
        if primary_label(campaign.question_set, task.gold_answer) == label:
            stats.n_gold_correct += 1
        # Beta(7, 3) prior: a newcomer starts at 0.7 and gold answers move them from there.
        stats.reliability = (stats.n_gold_correct + 7) / (stats.n_gold + 10)
    stats.save()
    return stats.reliability


# ---------------------------------------------------------------- consensus


def _choices(campaign: Campaign) -> list[str]:
    primary = campaign.question_set["primary"]
    for question in campaign.question_set["questions"]:
        if question["key"] == primary:
            return [c["value"] for c in question.get("choices", []) if c["value"] != UNSURE]
    return []


def consensus_update_task(*, task: Task) -> Consensus:
    """Recompute one task's consensus from its answers and the volunteers' reliabilities, then apply retirement."""
    campaign = task.campaign
    rows = list(
        Answer.objects.filter(task=task)
        .exclude(volunteer__is_blocked=True)
        .values_list("label", "volunteer_id")
    )
    blocked = set(
        VolunteerReliability.objects.filter(campaign=campaign, blocked=True).values_list(
            "volunteer_id", flat=True
        )
    )
    rows = [(label, vid) for label, vid in rows if vid not in blocked]
    weights_by_volunteer = dict(
        VolunteerReliability.objects.filter(
            campaign=campaign, volunteer_id__in=[v for _, v in rows]
        ).values_list("volunteer_id", "reliability")
    )
    state = campaign.aggregation_state or {}
    classes = _choices(campaign)
    prior = state.get("class_prior")
    result = aggregation.task_consensus(
        [label for label, _ in rows],
        [weights_by_volunteer.get(vid, DEFAULT_RELIABILITY) for _, vid in rows],
        classes=classes,
        prior=prior if prior and len(prior) == len(classes) else None,
        temperature=float(state.get("temperature", 1.0)),
        ignore_label=UNSURE,
    )
    consensus, _ = Consensus.objects.get_or_create(task=task)
    consensus.label = result.label or ""
    consensus.confidence = float(result.confidence)
    consensus.agreement = float(result.agreement)
    consensus.entropy = float(result.entropy)
    consensus.n_answers = len(rows)
    consensus.distribution = {str(k): round(v, 4) for k, v in result.posterior.items()}
    consensus.method = "incremental"
    if task.status in (Task.Status.OPEN, Task.Status.RETIRED, Task.Status.NEEDS_REVIEW):
        decision = aggregation.retirement_decision(
            result.confidence,
            len(rows),
            min_answers=campaign.min_answers,
            max_answers=campaign.max_answers,
            threshold=campaign.retirement_confidence,
        )
        new_status = {
            "retire": Task.Status.RETIRED,
            "needs_review": Task.Status.NEEDS_REVIEW,
            "continue": Task.Status.OPEN,
        }[decision]
        consensus.reason = _retirement_reason(decision, result.confidence, len(rows), campaign)
        priority = len(rows) + (1.0 - float(result.confidence))
        Task.objects.filter(pk=task.pk).update(status=new_status, priority=priority)
        task.status = new_status
    consensus.save()
    return consensus


def _retirement_reason(decision: str, confidence: float, n_answers: int, campaign: Campaign) -> str:
    if decision == "retire":
        return (
            f"confidence {confidence:.2f} reached the threshold {campaign.retirement_confidence:.2f} "
            f"after {n_answers} answers (minimum {campaign.min_answers})"
        )
    if decision == "needs_review":
        return (
            f"{n_answers} answers (the maximum is {campaign.max_answers}) without reaching confidence "
            f"{campaign.retirement_confidence:.2f}: sent to expert review"
        )
    return f"collecting answers: {n_answers} so far, confidence {confidence:.2f}"


def consensus_recompute_campaign(*, campaign: Campaign) -> dict[str, Any]:
    """Refit the campaign's whole model: every task's consensus and every volunteer's reliability."""
    import numpy as np

    started = timezone.now()
    classes = [*_choices(campaign), UNSURE]
    class_index = {c: i for i, c in enumerate(classes)}
    blocked = set(
        VolunteerReliability.objects.filter(campaign=campaign, blocked=True).values_list(
            "volunteer_id", flat=True
        )
    )
    rows = [
        (task_id, volunteer_id, label)
        for task_id, volunteer_id, label in Answer.objects.filter(campaign=campaign)
        .exclude(volunteer__is_blocked=True)
        .values_list("task_id", "volunteer_id", "label")
        .order_by("id")
        if volunteer_id not in blocked and label in class_index
    ]
    task_ids = sorted({r[0] for r in rows})
    volunteer_ids = sorted({r[1] for r in rows})
    t_index = {t: i for i, t in enumerate(task_ids)}
    v_index = {v: i for i, v in enumerate(volunteer_ids)}
    gold_tasks = {
        t.pk: primary_label(campaign.question_set, t.gold_answer)
        for t in Task.objects.filter(campaign=campaign, is_gold=True, pk__in=task_ids)
        if t.gold_answer
    }
    gold = {t_index[t]: class_index[label] for t, label in gold_tasks.items() if label in class_index}
    summary: dict[str, Any] = {
        "campaign": campaign.slug,
        "method": campaign.aggregation_method,
        "tasks": len(task_ids),
        "answers": len(rows),
        "volunteers": len(volunteer_ids),
    }
    if not rows:
        return {**summary, "retired": 0, "needs_review": 0, "flagged": 0}
    result = aggregation.aggregate(
        np.array([t_index[r[0]] for r in rows]),
        np.array([v_index[r[1]] for r in rows]),
        np.array([class_index[r[2]] for r in rows]),
        n_tasks=len(task_ids),
        n_workers=len(volunteer_ids),
        n_classes=len(classes),
        method=campaign.aggregation_method,
        gold=gold or None,
        ignore_label=class_index[UNSURE],
    )
    flagged = aggregation.flag_unreliable(result)
    prior = [float(p) for p in result.class_prior[: len(classes) - 1]] if len(result.class_prior) else None
    with transaction.atomic():
        campaign.aggregation_state = {
            "class_prior": prior,
            "temperature": float(result.incremental_temperature),
            "refit_at": timezone.now().isoformat(),
        }
        Campaign.objects.filter(pk=campaign.pk).update(aggregation_state=campaign.aggregation_state)
        for volunteer_id, index in v_index.items():
            VolunteerReliability.objects.update_or_create(
                campaign=campaign,
                volunteer_id=volunteer_id,
                defaults={
                    "reliability": float(np.clip(result.worker_reliability[index], 0, 1)),
                    "n_answers": int(result.worker_n_answers[index]),
                    "flagged": bool(flagged[index]),
                },
            )
        statuses = {"retire": 0, "needs_review": 0, "continue": 0}
        tasks = Task.objects.in_bulk(task_ids)
        for task_id, index in t_index.items():
            task = tasks[task_id]
            if task.is_gold:
                continue
            label_index = int(result.labels[index])
            confidence = float(result.confidence[index]) if label_index >= 0 else 0.0
            n_answers = int(result.n_answers[index])
            decision = aggregation.retirement_decision(
                confidence,
                n_answers,
                min_answers=campaign.min_answers,
                max_answers=campaign.max_answers,
                threshold=campaign.retirement_confidence,
            )
            statuses[decision] += 1
            Consensus.objects.update_or_create(
                task=task,
                defaults={
                    "label": classes[label_index] if label_index >= 0 else "",
                    "confidence": confidence,
                    "agreement": float(result.agreement[index]),
                    "entropy": float(result.entropy[index]),
                    "n_answers": n_answers,
                    "method": result.method,
                    "distribution": {
                        c: round(float(p), 4) for c, p in zip(classes, result.posteriors[index], strict=False)
                    },
                    "reason": _retirement_reason(decision, confidence, n_answers, campaign),
                },
            )
            if task.status != Task.Status.ADJUDICATED:
                new_status = {
                    "retire": Task.Status.RETIRED,
                    "needs_review": Task.Status.NEEDS_REVIEW,
                    "continue": Task.Status.OPEN,
                }[decision]
                Task.objects.filter(pk=task.pk).update(
                    status=new_status, priority=n_answers + 1.0 - confidence
                )
        summary.update(
            retired=statuses["retire"], needs_review=statuses["needs_review"], flagged=int(flagged.sum())
        )
        ledger_append(
            campaign=campaign, record={"type": "consensus_refit", **summary, "method": result.method}
        )
    summary["seconds"] = round((timezone.now() - started).total_seconds(), 3)
    return summary


# ---------------------------------------------------------------- adjudication


@transaction.atomic
def decision_record(*, task: Task, reviewer: User, label: str, note: str) -> Decision:
    note = note.strip()
    if not note:
        raise AnswerError("note", "a note explaining the decision is required")
    if label not in _choices(task.campaign) and label != UNSURE:
        raise AnswerError("label", f"must be one of {', '.join(_choices(task.campaign))}")
    decision = Decision.objects.create(task=task, reviewer=reviewer, label=label, note=note)
    Task.objects.filter(pk=task.pk).update(status=Task.Status.ADJUDICATED)
    ledger_append(
        campaign=task.campaign,
        record={
            "type": "decision",
            "task": task.pk,
            "decision": decision.pk,
            "label": label,
            "note": note,
            "reviewer": reviewer.get_username(),
        },
    )
    return decision


# ---------------------------------------------------------------- researcher workspace: volunteers, evidence sets


class EvidenceSetFrozen(Exception):
    """A frozen evidence set never changes: derive a new version instead."""


class EvidenceSetError(ValueError):
    """Bad input for an evidence set (name, filters, tasks); the message is shown as it is."""


@transaction.atomic
def volunteer_block_set(
    *, campaign: Campaign, volunteer: Volunteer, blocked: bool, by: User
) -> dict[str, Any]:
    """Block (or unblock) a volunteer's answers in one campaign, then refit the campaign's consensus."""
    stats, _ = VolunteerReliability.objects.get_or_create(campaign=campaign, volunteer=volunteer)
    if stats.blocked != blocked:
        stats.blocked = blocked
        stats.save(update_fields=["blocked", "updated_at"])
        ledger_append(
            campaign=campaign,
            record={
                "type": "volunteer_blocked" if blocked else "volunteer_unblocked",
                "volunteer": volunteer_commitment(campaign=campaign, volunteer=volunteer),
                "by": by.get_username(),
            },
        )
    summary = consensus_recompute_campaign(campaign=campaign)
    # Tasks whose only answers came from this volunteer keep a stale consensus after a refit: redo them.
    for task in Task.objects.filter(
        campaign=campaign, answers__volunteer=volunteer, is_gold=False
    ).distinct():
        consensus_update_task(task=task)
    return summary


def _evidence_record(evidence_set: Any, kind: str, by: User, **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "evidence_set": evidence_set.pk,
        "name": evidence_set.name,
        "version": evidence_set.version,
        "by": by.get_username(),
        **extra,
    }


@transaction.atomic
def evidence_set_create(
    *,
    campaign: Campaign,
    name: str,
    by: User,
    filters: dict[str, Any] | None = None,
    description: str = "",
) -> Any:
    """A new evidence set (version 1) holding the campaign's tasks that match `filters` (none: empty set)."""
    from verification.models import EvidenceItem, EvidenceSet
    from verification.selectors import FilterError, filters_normalise, tasks_matching

    name = name.strip()
    if not name:
        raise EvidenceSetError("an evidence set needs a name")
    if EvidenceSet.objects.filter(campaign=campaign, name=name).exists():
        raise EvidenceSetError(f"an evidence set called {name!r} already exists; derive a new version of it")
    try:
        rule = filters_normalise(filters or {})
        tasks = tasks_matching(campaign=campaign, filters=rule) if rule else []
    except FilterError as exc:
        raise EvidenceSetError(str(exc)) from exc
    evidence_set = EvidenceSet.objects.create(
        campaign=campaign, name=name, version=1, description=description, filters=rule, created_by=by
    )
    EvidenceItem.objects.bulk_create([EvidenceItem(evidence_set=evidence_set, task=t) for t in tasks])
    ledger_append(
        campaign=campaign,
        record=_evidence_record(
            evidence_set, "evidence_set_created", by, filters=rule, tasks=sorted(t.pk for t in tasks)
        ),
    )
    return evidence_set


def _locked_open_set(evidence_set: Any) -> Any:
    from verification.models import EvidenceSet

    locked = EvidenceSet.objects.select_for_update().get(pk=evidence_set.pk)
    if locked.frozen_at is not None:
        raise EvidenceSetFrozen(f"{locked} is frozen; derive a new version to change it")
    return locked


@transaction.atomic
def evidence_set_add(*, evidence_set: Any, task_ids: list[int], by: User) -> int:
    """Add tasks by hand (marked manual); tasks already in the set are left as they are."""
    from verification.models import EvidenceItem

    evidence_set = _locked_open_set(evidence_set)
    wanted = set(task_ids)
    tasks = set(
        Task.objects.filter(campaign_id=evidence_set.campaign_id, pk__in=wanted).values_list("pk", flat=True)
    )
    missing = wanted - tasks
    if missing:
        raise EvidenceSetError(f"task {min(missing)} is not in this campaign")
    present = set(
        EvidenceItem.objects.filter(evidence_set=evidence_set, task_id__in=tasks).values_list(
            "task_id", flat=True
        )
    )
    fresh = sorted(tasks - present)
    EvidenceItem.objects.bulk_create(
        [EvidenceItem(evidence_set=evidence_set, task_id=task_id, manual=True) for task_id in fresh]
    )
    if fresh:
        ledger_append(
            campaign=evidence_set.campaign,
            record=_evidence_record(evidence_set, "evidence_set_added", by, tasks=fresh),
        )
    return len(fresh)


@transaction.atomic
def evidence_set_remove(*, evidence_set: Any, task_ids: list[int], by: User) -> int:
    from verification.models import EvidenceItem

    evidence_set = _locked_open_set(evidence_set)
    items = EvidenceItem.objects.filter(evidence_set=evidence_set, task_id__in=set(task_ids))
    removed = sorted(items.values_list("task_id", flat=True))
    items.delete()
    if removed:
        ledger_append(
            campaign=evidence_set.campaign,
            record=_evidence_record(evidence_set, "evidence_set_removed", by, tasks=removed),
        )
    return len(removed)


@transaction.atomic
def evidence_set_freeze(*, evidence_set: Any, by: User) -> Any:
    """Freeze a set for good; the ledger keeps its exact task list and each task's label at that moment."""
    from verification.selectors import evidence_set_rows

    evidence_set = _locked_open_set(evidence_set)
    evidence_set.frozen_at = timezone.now()
    evidence_set.save(update_fields=["frozen_at"])
    rows = evidence_set_rows(evidence_set)
    ledger_append(
        campaign=evidence_set.campaign,
        record=_evidence_record(
            evidence_set,
            "evidence_set_frozen",
            by,
            tasks=[{"task": r["task_id"], "label": r["label"], "confidence": r["confidence"]} for r in rows],
        ),
    )
    return evidence_set


@transaction.atomic
def evidence_set_derive(*, evidence_set: Any, by: User) -> Any:
    """Copy a set into a new, open version (the highest version of its name plus one)."""
    from django.db.models import Max

    from verification.models import EvidenceItem, EvidenceSet

    latest = (
        EvidenceSet.objects.filter(campaign_id=evidence_set.campaign_id, name=evidence_set.name).aggregate(
            v=Max("version")
        )["v"]
        or 0
    )
    derived = EvidenceSet.objects.create(
        campaign_id=evidence_set.campaign_id,
        name=evidence_set.name,
        version=latest + 1,
        description=evidence_set.description,
        filters=evidence_set.filters,
        derived_from=evidence_set,
        created_by=by,
    )
    items = list(EvidenceItem.objects.filter(evidence_set=evidence_set).order_by("task_id"))
    EvidenceItem.objects.bulk_create(
        [EvidenceItem(evidence_set=derived, task_id=item.task_id, manual=item.manual) for item in items]
    )
    ledger_append(
        campaign=evidence_set.campaign,
        record=_evidence_record(
            derived,
            "evidence_set_derived",
            by,
            derived_from=evidence_set.pk,
            tasks=[i.task_id for i in items],
        ),
    )
    return derived


# ---------------------------------------------------------------- end of researcher workspace section
