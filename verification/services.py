"""Writes for answers, consensus, reliability, adjudication, evidence sets and the ledger."""

from __future__ import annotations

import hashlib
import logging
import math
import random
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from config import fastsql
from tasks.models import Assignment, Campaign, Source, Task, Volunteer
from tasks.questions import UNSURE, AnswerError, primary_label, primary_labels, validate_answer
from verification import aggregation, ledger, reasons
from verification.models import (
    Answer,
    AuditItem,
    Consensus,
    Decision,
    EvidenceItem,
    EvidenceSet,
    Export,
    LedgerEntry,
    LedgerHead,
    LedgerPending,
    VolunteerReliability,
)

logger = logging.getLogger("corroborate.verification")

DEFAULT_RELIABILITY = 0.7
# Rows per statement when the periodic refit writes consensus, reliabilities and statuses back.
REFIT_BATCH = 1000
# A task's status after the retirement rule's decision (aggregation.retirement_decision).
STATUS_OF_DECISION = {
    "retire": Task.Status.RETIRED,
    "needs_review": Task.Status.NEEDS_REVIEW,
    "continue": Task.Status.OPEN,
}


class AnswerConflict(Exception):
    """The volunteer already answered this task (with another client_id), or reused a client_id."""


class TaskNotAnswerable(Exception):
    """The task cannot take this answer (campaign not live, task full)."""


# ---------------------------------------------------------------- ledger


def ledger_append(*, campaign: Campaign, record: dict[str, Any]) -> None:
    """Append one record to the campaign's hash chain, in the caller's transaction."""
    write = ledger_append_write(campaign=campaign, record=record)
    if write is not None:
        fastsql.write_together([write])


def ledger_append_write(*, campaign: Campaign, record: dict[str, Any]) -> fastsql.Write | None:
    """Append one record to the campaign's hash chain, in the caller's transaction: on PostgreSQL, the write
    that appends it, for the caller to send with its own writes (``fastsql.write_together``); elsewhere
    the record is appended at once and the result is None.

    The record exists if and only if the caller's transaction commits, and the chain has no gap.

    PostgreSQL: the record's canonical text goes to LedgerPending, committed with the caller's change,
    and is chained into the ledger right after that commit (``ledger_chain_pending``, without waiting for
    the head: if another request is chaining, it or the next one takes this record too). Every read of the
    ledger chains what is waiting first. Chained at COMMIT (migration 0003), the head stayed locked until
    the commit was on disk, so a campaign's answers waited for each other's disk flushes, each holding its
    task's row lock. SQLite: chained here; the IMMEDIATE transaction already holds the write lock.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("ledger_append must run inside the transaction of the change it records")
    record = {**record, "at": record.get("at") or timezone.now().isoformat()}
    created_at = timezone.now()
    if connection.vendor == "postgresql":
        pending = LedgerPending(
            campaign=campaign, canonical=ledger.canonical(record).decode("utf-8"), created_at=created_at
        )
        _chain_after_commit(campaign.pk)
        return fastsql.insert_write(pending)
    heads = fastsql.table(LedgerHead)
    select = f"SELECT h.id, h.seq, h.head_hash FROM {heads} h WHERE h.campaign_id = %s"
    head = fastsql.fetch_one(select, [campaign.pk])
    if head is None:
        LedgerHead.objects.get_or_create(campaign=campaign)
        head = fastsql.fetch_one(select, [campaign.pk])
        assert head is not None
    head_pk, head_seq, head_hash = head
    entry = LedgerEntry(
        campaign=campaign,
        seq=head_seq + 1,
        prev_hash=head_hash,
        entry_hash=ledger.entry_hash(head_hash, record),
        record=record,
        created_at=created_at,
    )
    fastsql.insert_instance(entry)
    fastsql.execute(
        f"UPDATE {heads} SET seq = %s, head_hash = %s WHERE id = %s", [entry.seq, entry.entry_hash, head_pk]
    )
    return None


def volunteer_commitment(*, campaign: Campaign, volunteer: Volunteer) -> str:
    """A salted hash of the volunteer's id: links a volunteer's ledger entries without revealing who they are."""
    return hashlib.sha256(f"{campaign.ledger_salt}:{volunteer.public_id}".encode()).hexdigest()[:32]


def ledger_chain_pending(*, campaign_id: int, wait: bool = True) -> int:
    """Chain the campaign's committed ledger records that are waiting (PostgreSQL; elsewhere nothing waits).

    With `wait`, waits for a chainer that holds the campaign's head, so that every record committed before
    the call is in the ledger when it returns: call it before reading the ledger. Without, it returns -1 at
    once when another chainer holds the head (that chainer, or the next, takes the waiting records), and
    commits without waiting for the disk: a chaining lost in a crash leaves its records waiting, and the
    next chainer chains them again, in id order. Returns the number of records chained.
    """
    if connection.vendor != "postgresql":
        return 0
    # One statement, its own transaction unless the caller has one (whose commit must stay synchronous).
    quiet = not wait and not connection.in_atomic_block
    row = fastsql.fetch_one(
        "SELECT "
        + (f"{fastsql.no_disk_wait()}, " if quiet else "")
        + "corroborate_ledger_chain_pending(%s, %s)",
        [campaign_id, wait],
    )
    assert row is not None
    return int(row[-1])


# When this process last chained each campaign's records after a commit (time.monotonic()).
_chained_after_commit_at: dict[int, float] = {}


def _chain_after_commit(campaign_id: int) -> None:
    """Chain the campaign's waiting records once the current transaction commits (once per transaction),
    unless this process did so less than LEDGER_CHAIN_INTERVAL seconds ago.

    Then the records wait, committed, for this process's next commit after the interval, another
    process's, the next read of the ledger (every read chains first) or the every-minute job. One call
    chains a batch for little more than the price of one record: 0.35–0.38 ms of PostgreSQL time for one
    record alone, 0.045 ms a record in a batch (600 records, 27–29 ms), so under load the chainer's share of
    an answer's database time falls several-fold, and most answers save the round trip.
    """
    connection = transaction.get_connection()
    if any(getattr(f, "ledger_campaign", None) == campaign_id for _, f, _ in connection.run_on_commit):
        return

    def chain() -> None:
        now = time.monotonic()
        if now - _chained_after_commit_at.get(campaign_id, -math.inf) < settings.LEDGER_CHAIN_INTERVAL:
            return
        _chained_after_commit_at[campaign_id] = now
        ledger_chain_pending(campaign_id=campaign_id, wait=False)

    chain.ledger_campaign = campaign_id  # type: ignore[attr-defined]
    # Robust: the change is committed whatever happens here; the records wait for the next chainer.
    transaction.on_commit(chain, robust=True)


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

    The first submission is written without looking for an earlier one: the unique constraints on
    (volunteer, client_id) and (task, volunteer) refuse a repeat, and only then (and on any other refusal)
    is the earlier answer looked up, so that a repeated client_id gets its answer back whatever else
    changed since. Locks: the task row first (answer counts, retirement and the open-slot rule hinge on
    it), the campaign's ledger head last, just before commit.
    """
    try:
        with transaction.atomic():
            return _answer_write(
                task=task, volunteer=volunteer, answer=answer, client_id=client_id, duration_ms=duration_ms
            )
    except (AnswerError, TaskNotAnswerable, IntegrityError):
        previous = (
            Answer.objects.filter(volunteer=volunteer)
            .filter(Q(client_id=client_id) | Q(task_id=task.pk))
            .select_related("task__campaign")
            .order_by("-id")
        )
        for existing in previous:
            if existing.client_id == client_id:
                if existing.task_id != task.pk:
                    raise AnswerConflict("this client_id was already used for another task") from None
                return existing, False
        if previous:
            raise AnswerConflict("you already answered this task") from None
        raise


def _answer_write(
    *, task: Task, volunteer: Volunteer, answer: Any, client_id: uuid.UUID, duration_ms: int | None
) -> tuple[Answer, bool]:
    # One query takes the task's row lock and reads the task and its campaign fresh.
    task = _task_locked_with_campaign(task.pk)
    campaign = task.campaign
    if campaign.status != Campaign.Status.LIVE:
        raise TaskNotAnswerable(f"campaign {campaign.slug} is {campaign.status} and does not accept answers")
    normalised = validate_answer(campaign.question_set, answer, tile_size_px=_tile_size(task))
    # Even a lease holder is refused once the task is full: an expired lease's slot may have been
    # given to someone else, and a task never takes more than max_answers.
    if not task.is_gold and task.answer_count >= campaign.max_answers:
        raise TaskNotAnswerable("this task already has all the answers it needs")
    label = primary_label(campaign.question_set, normalised) or ""
    now = timezone.now()
    created = Answer(
        task=task,
        volunteer=volunteer,
        campaign=campaign,
        answer=normalised,
        label=label,
        client_id=client_id,
        duration_ms=duration_ms,
        created_at=now,
    )
    # Three writes in one round trip (config/fastsql.py): the answer (its unique constraints still refuse a
    # repeated client_id or a second answer to the task with an IntegrityError, as through the ORM), the
    # assignment (one upsert: the lease, if any, becomes the answered assignment; leased_at is kept) and
    # the volunteer's statistics in this campaign.
    statistics, scored = _statistics_write(campaign=campaign, volunteer=volunteer, task=task, label=label)
    answer_id, _, reliability = fastsql.write_together(
        [
            fastsql.insert_write(created),
            fastsql.insert_write(
                Assignment(
                    task=task,
                    volunteer=volunteer,
                    campaign=campaign,
                    state=Assignment.State.ANSWERED,
                    leased_at=now,
                    expires_at=now,
                ),
                conflict=("task", "volunteer"),
                update=("state", "expires_at"),
            ),
            statistics,
        ]
    )
    created.pk, created._state.adding = answer_id, False
    if reliability is None:
        # The volunteer's first answer in this campaign: their statistics row does not exist yet.
        VolunteerReliability.objects.get_or_create(campaign=campaign, volunteer=volunteer)
        (reliability,) = fastsql.write_together([statistics])
    reliability = float(reliability) if scored else None
    task.answer_count += 1
    # An answer frees its lease's slot (or fills a slot): the "all slots leased" hint is recomputed by the
    # next lease that fills the task.
    task_fields: dict[str, Any] = {"answer_count": task.answer_count, "leases_full_until": None}
    if normalised.get("graphic") == "yes" and not task.flags.get("graphic"):
        # One report is enough to protect the next volunteers: the segment is blurred until they choose.
        task.flags = {**task.flags, "graphic": True}
        task_fields["flags"] = task.flags
    created.task = task
    # The ledger record goes with the task's writes: one round trip on PostgreSQL.
    recorded = ledger_append_write(
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
    also = [recorded] if recorded is not None else []
    if task.is_gold:
        fastsql.write_together([fastsql.update_write(Task, task.pk, task_fields), *also])
    else:
        # The consensus service writes the answer count with the new status and priority: one UPDATE.
        _consensus_update(task=task, task_fields=task_fields, also=also)
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "answer recorded", extra={"task": task.pk, "campaign": campaign.slug, "reliability": reliability}
        )
    return created, True


def _task_locked_with_campaign(task_id: int) -> Task:
    """The task (row locked on PostgreSQL) with its campaign, read fresh in one plain-SQL statement."""
    lock = " FOR UPDATE OF t" if connection.features.has_select_for_update else ""
    row = fastsql.fetch_one(
        f"SELECT {fastsql.columns(Task, 't')}, {fastsql.columns(Campaign, 'c')} FROM {fastsql.table(Task)} t"
        f" JOIN {fastsql.table(Campaign)} c ON c.id = t.campaign_id WHERE t.id = %s{lock}",
        [task_id],
    )
    if row is None:
        raise Task.DoesNotExist(f"task {task_id} does not exist")
    task, at = fastsql.load(Task, row)
    task.campaign, _ = fastsql.load(Campaign, row, at)
    return task


def _tile_size(task: Task) -> tuple[int, int] | None:
    if task.window and "width" in task.window:
        return int(task.window["width"]), int(task.window["height"])
    return None


def _statistics_write(
    *, campaign: Campaign, volunteer: Volunteer, task: Task, label: str
) -> tuple[fastsql.Write, bool]:
    """The UPDATE that counts an answer in the volunteer's statistics for this campaign, returning their
    reliability, and whether the answer is scored (a gold answer that is not "unsure"): only a scored
    answer moves the reliability.

    The counts are incremented in SQL, so no read is needed; the right-hand sides read the row as it was.
    """
    scored = bool(task.is_gold and task.gold_answer and label != UNSURE)
    sets, params = (
        "n_answers = n_answers + 1, answers_given = answers_given + 1, updated_at = %s",
        [fastsql.prep(VolunteerReliability, "updated_at", timezone.now())],
    )
    if scored:
        correct = int(primary_label(campaign.question_set, task.gold_answer or {}) == label)
        # Beta(7, 3) prior: a newcomer starts at 0.7 and gold answers move them from there.
        sets += (
            ", n_gold = n_gold + 1, n_gold_correct = n_gold_correct + %s,"
            " reliability = (n_gold_correct + %s) / (n_gold + 11.0)"
        )
        params += [correct, correct + 7.0]
    sql = f"UPDATE {fastsql.table(VolunteerReliability)} SET {sets} WHERE campaign_id = %s AND volunteer_id = %s"
    return fastsql.Write(sql, [*params, campaign.pk, volunteer.pk], "reliability"), scored


# ---------------------------------------------------------------- consensus


def _choices(campaign: Campaign) -> list[str]:
    """The primary question's consensus labels (every combination of options for a multiple choice), unsure
    left out."""
    return [value for value, _ in primary_labels(campaign.question_set) if value != UNSURE]


def _check_primary_label(campaign: Campaign, label: str) -> None:
    """A reviewer's label (a decision, an audit answer) must be one of the primary question's, or unsure."""
    labels = _choices(campaign)
    if label not in labels and label != UNSURE:
        raise AnswerError("label", f"must be one of {', '.join(labels)}")


def consensus_update_task(*, task: Task) -> Consensus:
    """Recompute one task's consensus from its answers and the volunteers' reliabilities, then apply retirement."""
    return _consensus_update(task=task, task_fields={})


def _consensus_update(
    *, task: Task, task_fields: dict[str, Any], also: Sequence[fastsql.Write] = ()
) -> Consensus:
    """consensus_update_task, also writing `task_fields` to the task in the same UPDATE, and the writes
    `also` with them.

    Two round trips: the answers with their volunteers' reliability in this campaign (blocked volunteers,
    site-wide or in this campaign, left out), then the consensus upsert and the task update together.
    """
    campaign = task.campaign
    # Plain SQL (config/fastsql.py): this runs with every answer. Each answer's volunteer and reliability
    # row are looked up by key in scalar subqueries, which PostgreSQL cannot turn into joins: a join here
    # could be planned (in a prepared statement's generic plan) as a hash join reading the campaign's
    # every volunteer and reliability row, to combine a task's handful of answers.
    volunteers, reliabilities = fastsql.table(Volunteer), fastsql.table(VolunteerReliability)
    reliability = f"FROM {reliabilities} r WHERE r.campaign_id = %s AND r.volunteer_id = a.volunteer_id"
    with connection.cursor() as cursor:
        fastsql.run(
            cursor,
            f"SELECT a.label, (SELECT r.reliability {reliability}) FROM {fastsql.table(Answer)} a"
            f" WHERE a.task_id = %s AND (SELECT v.is_blocked FROM {volunteers} v WHERE v.id = a.volunteer_id) = %s"
            f" AND COALESCE((SELECT r.blocked {reliability}), %s) = %s ORDER BY a.id",
            [campaign.pk, task.pk, False, campaign.pk, False, False],
            custom_plan=True,
        )
        rows = cursor.fetchall()
    classes = _choices(campaign)
    # A label the question set no longer offers counts nowhere, as in the refit, rather than failing every answer.
    known = {*classes, UNSURE}
    rows = [row for row in rows if row[0] in known]
    labels = [label for label, _ in rows]
    state = campaign.aggregation_state or {}
    prior = state.get("class_prior")
    result = aggregation.task_consensus(
        labels,
        [DEFAULT_RELIABILITY if weight is None else weight for _, weight in rows],
        classes=classes,
        prior=prior if prior and len(prior) == len(classes) else None,
        temperature=float(state.get("temperature", 1.0)),
        ignore_label=UNSURE,
    )
    consensus = Consensus(
        task=task,
        label=result.label or "",
        confidence=float(result.confidence),
        agreement=float(result.agreement),
        entropy=float(result.entropy),
        n_answers=len(rows),
        distribution={str(k): round(v, 4) for k, v in result.posterior.items()},
        method="incremental",
    )
    update_fields = ["label", "confidence", "agreement", "entropy", "n_answers", "distribution", "method"]
    if task.status in (Task.Status.OPEN, Task.Status.RETIRED, Task.Status.NEEDS_REVIEW) and not (
        task.status == Task.Status.NEEDS_REVIEW and _audit_contradicted(task)
    ):
        decision, consensus.reason, consensus.reason_params = _retirement(
            campaign=campaign,
            posterior=[result.posterior[c] for c in classes],
            confidence=result.confidence,
            labels=labels,
        )
        new_status = STATUS_OF_DECISION[decision]
        update_fields += ["reason", "reason_params"]
        task_fields = {
            **task_fields,
            "status": new_status,
            "priority": len(rows) + (1.0 - float(result.confidence)),
        }
        task.status = new_status
    # One upsert instead of get_or_create + save (plain SQL: it runs with every answer).
    consensus.updated_at = timezone.now()
    writes = [fastsql.insert_write(consensus, conflict=("task",), update=(*update_fields, "updated_at"))]
    if task_fields:
        writes.append(fastsql.update_write(Task, task.pk, task_fields))
    consensus.pk = fastsql.write_together([*writes, *also])[0]
    consensus._state.adding = False
    return consensus


def _audit_contradicted(task: Task) -> bool:
    """Whether the expert audit contradicted the crowd on this task: it then waits for a reviewer's decision,
    whatever a late answer (a lease given before the audit) makes of its consensus."""
    return (
        AuditItem.objects.filter(task_id=task.pk, audited_at__isnull=False)
        .exclude(expert_label__in=[UNSURE, F("crowd_label")])
        .exists()
    )


@dataclass(frozen=True)
class ExpertLabels:
    """Expert labels a refit clamps to, by task id: ``gold`` also calibrates confidence, ``anchors`` not."""

    gold: dict[int, str]
    anchors: dict[int, str]
    counts: dict[str, int]


def _expert_labels(*, campaign: Campaign, task_ids: Sequence[int]) -> ExpertLabels:
    """What experts said about the campaign's answered tasks, for the refit.

    Gold tasks' answers and the sampled audit's answers calibrate (the audit draws settled tasks at
    random, so it measures the crowd where it claims to be sure); reviewers' decisions only anchor
    volunteers' reliability: the tasks sent to review are the hard ones, and calibrating on them would make
    every other task look less certain than it is.  A task's latest decision counts; a task in the audit
    keeps the audit's label, so the calibration sample stays random.
    """
    # Filtered by campaign, then to the answered tasks here: a list of every task id would be one SQL
    # parameter per task.
    answered = set(task_ids)
    gold = {
        t.pk: label
        for t in Task.objects.filter(campaign=campaign, is_gold=True).only("gold_answer")
        if t.pk in answered
        and t.gold_answer
        and (label := primary_label(campaign.question_set, t.gold_answer))
    }
    audited = {
        task_id: label
        for task_id, label in AuditItem.objects.filter(campaign=campaign)
        .exclude(expert_label__in=["", UNSURE])
        .values_list("task_id", "expert_label")
        if task_id in answered and task_id not in gold
    }
    decided: dict[int, str] = {}
    for task_id, label in (
        Decision.objects.filter(task__campaign=campaign)
        .order_by("created_at", "id")
        .values_list("task_id", "label")
    ):
        decided[task_id] = label  # the latest decision wins
    # An expert who was unsure settles nothing.
    anchors = {
        t: label
        for t, label in decided.items()
        if label != UNSURE and t in answered and t not in gold and t not in audited
    }
    return ExpertLabels(
        gold={**gold, **audited},
        anchors=anchors,
        counts={"gold_tasks": len(gold), "audits": len(audited), "decisions": len(anchors)},
    )


def _expert_labels_line(counts: dict[str, int] | None) -> str:
    """Methodology: which expert labels the last refit stood on."""
    if not counts:
        return "- Expert labels in the last refit: none recorded."
    return (
        f"- Expert labels in the last refit: {counts.get('gold_tasks', 0)} gold tasks and "
        f"{counts.get('audits', 0)} audit answers (the model is held to them, and they calibrate the "
        f"confidence), {counts.get('decisions', 0)} reviewer decisions (held to them to learn who is "
        "reliable; not used to calibrate, since reviewers see the hardest tasks)."
    )


def _common_accuracy_lines(state: dict[str, Any]) -> list[str]:
    """Methodology: whether the last refit counted every volunteer the same, and who it gave no weight."""
    if not state.get("common_accuracy"):
        return []
    silenced = state.get("at_chance_on_gold")
    return [
        "- At the last refit the volunteers could not be told apart (a model in which they all share one "
        "accuracy predicted held-out answers as well as one with a reliability for each), so every volunteer "
        "counted the same"
        + (
            f", except {silenced} whose gold answers were those of someone answering at random: their answers "
            "were given no weight."
            if silenced
            else ": the labels are the majority's."
        )
    ]


def _retirement(
    *, campaign: Campaign, posterior: Sequence[float], confidence: float, labels: Sequence[str]
) -> tuple[str, str, dict[str, Any]]:
    """The retirement rule's decision for a task with these answers' ``labels`` and ``posterior`` over the
    voting classes, the reason researchers read for it (English) and its case with figures
    (`verification.reasons`, to say it in the reader's language)."""
    state = campaign.aggregation_state or {}
    n_answers = len(labels)
    remaining = max(campaign.max_answers - n_answers, 0)
    label_change = aggregation.label_change_probability(
        posterior,
        remaining,
        crowd_reliability=float(state.get("crowd_reliability") or DEFAULT_RELIABILITY),
        temperature=float(state.get("temperature", 1.0)),
    )
    margin = aggregation.vote_margin(labels, ignore_label=UNSURE)
    # The two-vote lead keeps one volunteer's word from settling a task against another's; a campaign that
    # asks for a single answer accepts one volunteer's word when it is the only answer.
    needs_lead = 1 if campaign.min_answers == 1 and n_answers == 1 else aggregation.RETIREMENT_MIN_MARGIN
    decision = aggregation.retirement_decision(
        confidence,
        n_answers,
        label_change=label_change,
        min_answers=campaign.min_answers,
        max_answers=campaign.max_answers,
        threshold=campaign.retirement_confidence,
        vote_margin=margin,
        min_margin=needs_lead,
    )
    threshold = campaign.retirement_confidence
    # The confidence needed rises with the answers (aggregation.retirement_threshold): say which one applied.
    needed = aggregation.retirement_threshold(
        n_answers, min_answers=campaign.min_answers, threshold=threshold
    )
    figures = {
        "confidence": confidence,
        "n": n_answers,
        "min": campaign.min_answers,
        "max": campaign.max_answers,
        "threshold": threshold,
        "needed": needed,
        "remaining": remaining,
        "change": label_change,
        "margin": margin,
        "lead": needs_lead,
    }
    if decision == "retire" and confidence >= needed:
        key = "reached"
    elif decision == "retire" and remaining == 0:
        key = "reached_at_max"
    elif decision == "retire":
        key = "settled"
    elif decision == "needs_review" and remaining == 0 and confidence >= threshold:
        # The confidence was there; the volunteers' split was not settled (a lead under the two votes).
        key = "split_at_max"
    elif decision == "needs_review" and remaining == 0:
        key = "unsure_at_max"
    elif decision == "needs_review":
        key = "settled_low"
    elif n_answers < campaign.min_answers:
        key = "collecting_min"
    else:
        key = "collecting" if margin >= needs_lead else "collecting_lead"
    text, params = reasons.reason(key, **figures)
    return decision, text, params


def consensus_recompute_campaign(*, campaign: Campaign) -> dict[str, Any]:
    """Refit the campaign's whole model: every task's consensus and every volunteer's reliability.

    The fit reads every answer at once, then writes back in chunks of ``REFIT_BATCH`` tasks, each in a
    transaction of its own that locks its tasks' rows: answers arriving meanwhile wait for one chunk at
    most, never for the whole write-back (seconds on a campaign of 40,000 tiles). A task that took an answer,
    a reviewer's decision or an audit answer after the fit read the campaign keeps what that write made of it
    (the incremental consensus of its newest answers, the expert's status): the refit's figures for it are
    already stale, and the next refit counts them. The refit's ledger record and ``refit_at`` commit last,
    with the final chunk; a refit killed half-way leaves every chunk it wrote consistent, and the next
    periodic run, which sees answers newer than the old ``refit_at``, does it again.
    """
    import numpy as np

    started = timezone.now()
    classes = [*_choices(campaign), UNSURE]
    class_index = {c: i for i, c in enumerate(classes)}
    blocked = set(
        VolunteerReliability.objects.filter(campaign=campaign, blocked=True).values_list(
            "volunteer_id", flat=True
        )
    )
    # One statement, so one snapshot: the answers each task had when it was read, blocked or not, compared
    # under the row lock with the task's answer_count, which counts them all, tell a task answered since.
    read_counts: dict[int, int] = {}
    rows: list[tuple[int, int, str]] = []
    for task_id, volunteer_id, label, is_blocked in (
        Answer.objects.filter(campaign=campaign)
        .values_list("task_id", "volunteer_id", "label", "volunteer__is_blocked")
        .order_by("id")
    ):
        read_counts[task_id] = read_counts.get(task_id, 0) + 1
        if not is_blocked and volunteer_id not in blocked and label in class_index:
            rows.append((task_id, volunteer_id, label))
    task_ids = sorted({r[0] for r in rows})
    volunteer_ids = sorted({r[1] for r in rows})
    t_index = {t: i for i, t in enumerate(task_ids)}
    v_index = {v: i for i, v in enumerate(volunteer_ids)}
    experts = _expert_labels(campaign=campaign, task_ids=task_ids)
    gold = {t_index[t]: class_index[label] for t, label in experts.gold.items() if label in class_index}
    anchors = {t_index[t]: class_index[label] for t, label in experts.anchors.items() if label in class_index}
    summary: dict[str, Any] = {
        "campaign": campaign.slug,
        "method": campaign.aggregation_method,
        "tasks": len(task_ids),
        "answers": len(rows),
        "volunteers": len(volunteer_ids),
        "expert_labels": experts.counts,
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
        anchors=anchors or None,
        ignore_label=class_index[UNSURE],
    )
    flagged = aggregation.flag_unreliable(result)
    labels_by_task: dict[int, list[str]] = {}
    for task_id, _, label in rows:
        labels_by_task.setdefault(task_id, []).append(label)
    prior = [float(p) for p in result.class_prior[: len(classes) - 1]] if len(result.class_prior) else None
    state = {
        "class_prior": prior,
        "temperature": float(result.incremental_temperature),
        "refit_at": started.isoformat(),  # answers during the refit count as new
        "expert_labels": experts.counts,
        # Volunteers the refit could not tell apart share one accuracy (aggregation._prefers_common_accuracy).
        "common_accuracy": bool(result.common_accuracy),
        # Volunteers whose gold answers put them at chance (aggregation._chance_on_gold): flagged, and given
        # no weight when the others share one accuracy.
        "at_chance_on_gold": int(result.worker_chance_on_gold.sum()),
        # The typical volunteer whose answers the retirement rule expects (label_change_probability).
        "crowd_reliability": float(
            np.average(result.worker_reliability, weights=np.maximum(result.worker_n_answers, 1e-9))
        ),
    }
    # The retirement rule reads the new state (via the campaign) when the write-back decides each task.
    campaign.aggregation_state = {**(campaign.aggregation_state or {}), **state}
    now = timezone.now()
    # Batched upserts: one statement per REFIT_BATCH rows. Row by row (update_or_create), the write-back
    # took 5 ms a task, 19 s for 4,000 tiles (benchmarks/researcher_pages.py), however fast the fit.
    with transaction.atomic():
        VolunteerReliability.objects.bulk_create(
            [
                VolunteerReliability(
                    campaign=campaign,
                    volunteer_id=volunteer_id,
                    reliability=float(np.clip(result.worker_reliability[index], 0, 1)),
                    n_answers=int(result.worker_n_answers[index]),
                    flagged=bool(flagged[index]),
                    updated_at=now,
                )
                for volunteer_id, index in v_index.items()
            ],
            batch_size=REFIT_BATCH,
            update_conflicts=True,
            unique_fields=["campaign", "volunteer"],
            update_fields=["reliability", "n_answers", "flagged", "updated_at"],
        )
    statuses = {"retire": 0, "needs_review": 0, "continue": 0}
    changed = 0
    fitted = [t for t in task_ids if t not in experts.gold and t not in experts.anchors]
    chunks = [fitted[i : i + REFIT_BATCH] for i in range(0, len(fitted), REFIT_BATCH)] or [[]]
    # Every task's decision and consensus row is worked out before any lock is taken: a chunk's transaction
    # only checks and writes.
    plans = {
        task_id: _refit_plan(
            campaign=campaign,
            result=result,
            index=t_index[task_id],
            classes=classes,
            labels=labels_by_task[task_id],
            now=now,
        )
        for task_id in fitted
    }
    for number, chunk in enumerate(chunks):
        with transaction.atomic():
            written, skipped = _refit_write_chunk(
                chunk=chunk, plans=plans, read_counts=read_counts, since=started
            )
            changed += skipped
            for decision in written:
                statuses[decision] += 1
            if number == len(chunks) - 1:
                # The refit's state and record commit with its last chunk.
                Campaign.objects.filter(pk=campaign.pk).update(aggregation_state=campaign.aggregation_state)
                summary.update(
                    retired=statuses["retire"],
                    needs_review=statuses["needs_review"],
                    flagged=int(flagged.sum()),
                    changed_during_refit=changed,
                )
                ledger_append(
                    campaign=campaign, record={"type": "consensus_refit", **summary, "method": result.method}
                )
    summary["seconds"] = round((timezone.now() - started).total_seconds(), 3)
    return summary


def _refit_plan(
    *,
    campaign: Campaign,
    result: aggregation.AggregationResult,
    index: int,
    classes: list[str],
    labels: list[str],
    now: Any,
) -> tuple[str, Consensus]:
    """One task's retirement decision and consensus row from the campaign's refit."""
    label_index = int(result.labels[index])
    confidence = float(result.confidence[index]) if label_index >= 0 else 0.0
    decision, reason, reason_params = _retirement(
        campaign=campaign,
        posterior=result.posteriors[index, : len(classes) - 1].tolist(),  # UNSURE is last
        confidence=confidence,
        labels=labels,
    )
    consensus = Consensus(
        label=classes[label_index] if label_index >= 0 else "",
        confidence=confidence,
        agreement=float(result.agreement[index]),
        entropy=float(result.entropy[index]),
        n_answers=int(result.n_answers[index]),
        method=result.method,
        distribution={c: round(float(p), 4) for c, p in zip(classes, result.posteriors[index], strict=False)},
        reason=reason,
        reason_params=reason_params,
        updated_at=now,
    )
    return decision, consensus


def _refit_write_chunk(
    *,
    chunk: Sequence[int],
    plans: dict[int, tuple[str, Consensus]],
    read_counts: dict[int, int],
    since: Any,
) -> tuple[list[str], int]:
    """Write the refit's consensus and status of ``chunk``'s tasks, under their row locks, in the caller's
    transaction; returns the decisions written and the number of tasks left alone because an answer, a
    decision or an audit answer reached them after the fit read the campaign."""
    if not chunk:
        return [], 0
    # Row locks in id order (as every chunk takes them), so two refits cannot deadlock; an answer locks one
    # task row and waits for this chunk only.
    locked = {
        pk: (status, is_gold, answer_count)
        for pk, status, is_gold, answer_count in Task.objects.filter(pk__in=chunk)
        .order_by("pk")
        .select_for_update()
        .values_list("pk", "status", "is_gold", "answer_count")
    }
    experts_since = set(
        AuditItem.objects.filter(task_id__in=chunk, audited_at__gte=since).values_list("task_id", flat=True)
    ) | set(
        Decision.objects.filter(task_id__in=chunk, created_at__gte=since).values_list("task_id", flat=True)
    )
    decisions: list[str] = []
    consensuses: list[Consensus] = []
    task_updates: list[tuple[str, float, int]] = []
    skipped = 0
    for task_id in chunk:
        status, is_gold, answer_count = locked[task_id]
        if is_gold:
            # The fit clamps an expert-labelled task to the expert's label: its crowd consensus stays what
            # the crowd said, and its status what the expert made it.
            continue
        if answer_count != read_counts.get(task_id, 0) or task_id in experts_since:
            skipped += 1
            continue
        decision, consensus = plans[task_id]
        consensus.task_id = task_id
        decisions.append(decision)
        consensuses.append(consensus)
        if status != Task.Status.ADJUDICATED:
            task_updates.append(
                (str(STATUS_OF_DECISION[decision]), consensus.n_answers + 1.0 - consensus.confidence, task_id)
            )
    Consensus.objects.bulk_create(
        consensuses,
        batch_size=REFIT_BATCH,
        update_conflicts=True,
        unique_fields=["task"],
        update_fields=[
            "label",
            "confidence",
            "agreement",
            "entropy",
            "n_answers",
            "method",
            "distribution",
            "reason",
            "reason_params",
            "updated_at",
        ],
    )
    if task_updates:
        # One parameterised UPDATE run for every task (psycopg pipelines executemany): Django's bulk_update
        # builds a CASE per row and took 38 of the refit's 61 s for 40,000 tiles.
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {fastsql.table(Task)} SET {fastsql.column(Task, 'status')} = %s,"
                f" {fastsql.column(Task, 'priority')} = %s WHERE {fastsql.column(Task, 'id')} = %s",
                task_updates,
            )
    return decisions, skipped


# ---------------------------------------------------------------- adjudication


@transaction.atomic
def decision_record(*, task: Task, reviewer: User, label: str, note: str) -> Decision:
    note = note.strip()
    if not note:
        raise AnswerError("note", "a note explaining the decision is required")
    _check_primary_label(task.campaign, label)
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


# ---------------------------------------------------------------- sampled expert audit

# At most this many tasks are drawn at once: an audit is a sample a few experts can answer, not a second crowd.
AUDIT_MAX_DRAW = 500


@transaction.atomic
def audit_draw(*, campaign: Campaign, size: int, by: User) -> list[AuditItem]:
    """Draw ``size`` tasks at random, without replacement, from those the crowd retired and that no audit has
    drawn yet (fewer when fewer are left), freezing the crowd's label and confidence at the draw."""
    if not 1 <= size <= AUDIT_MAX_DRAW:
        raise AnswerError("size", f"draw between 1 and {AUDIT_MAX_DRAW} tasks at a time")
    drawn = AuditItem.objects.filter(campaign=campaign).values("task_id")
    candidates = list(
        Consensus.objects.filter(
            task__campaign=campaign, task__is_gold=False, task__status=Task.Status.RETIRED
        )
        .exclude(label="")
        .exclude(task_id__in=drawn)
        .values_list("task_id", "label", "confidence")
        .order_by("task_id")
    )
    if not candidates:
        raise AnswerError("size", "no retired task is left to audit")
    # SystemRandom: a reviewer must not be able to predict, or steer, which tasks the audit looks at.
    picked = sorted(random.SystemRandom().sample(candidates, min(size, len(candidates))))
    items = AuditItem.objects.bulk_create(
        [
            AuditItem(
                campaign=campaign,
                task_id=task_id,
                crowd_label=label,
                crowd_confidence=confidence,
                drawn_by=by,
            )
            for task_id, label, confidence in picked
        ]
    )
    ledger_append(
        campaign=campaign,
        record={
            "type": "audit_draw",
            "tasks": [task_id for task_id, _, _ in picked],
            "of": len(candidates),
            "reviewer": by.get_username(),
        },
    )
    return items


@transaction.atomic
def audit_answer(*, item: AuditItem, label: str, note: str, by: User) -> AuditItem:
    """Record a reviewer's blind answer to one audited task; an audit answer, like a decision, is never edited.

    When the expert contradicts the crowd (neither unsure), the crowd's label must not stand in the evidence
    unexamined: the task goes back to the review queue (unless a reviewer has already decided it), where a
    reviewer decides it with a note.
    """
    locked = AuditItem.objects.select_for_update().get(pk=item.pk)
    if locked.audited_at is not None:
        raise AnswerError("label", f"task {locked.task_id} has already been audited")
    _check_primary_label(locked.campaign, label)
    locked.expert_label, locked.note = label, note.strip()
    locked.audited_by, locked.audited_at = by, timezone.now()
    locked.save(update_fields=["expert_label", "note", "audited_by", "audited_at"])
    contradicted = label not in (UNSURE, locked.crowd_label)
    sent_to_review = bool(
        contradicted
        and Task.objects.filter(pk=locked.task_id, status__in=[Task.Status.RETIRED, Task.Status.OPEN]).update(
            status=Task.Status.NEEDS_REVIEW
        )
    )
    if sent_to_review:
        text, params = reasons.reason("audit", label=label, crowd=locked.crowd_label)
        Consensus.objects.filter(task_id=locked.task_id).update(
            reason=text, reason_params=params, updated_at=timezone.now()
        )
    ledger_append(
        campaign=locked.campaign,
        record={
            "type": "audit",
            "task": locked.task_id,
            "label": label,
            "crowd_label": locked.crowd_label,
            "note": locked.note,
            "reviewer": by.get_username(),
            "sent_to_review": sent_to_review,
        },
    )
    return locked


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


# ---------------------------------------------------------------- ledger verification and evidence export


def ledger_verify(*, campaign: Campaign) -> ledger.LedgerProblem | None:
    """The first edit, deletion, insertion or reordering in the campaign's ledger rows, or None when intact.

    Rows are read in seq order and re-chained; the chain must end at the LedgerHead (which catches a
    deleted last row) and the head's seq must be the last row's. Records waiting to be chained are
    chained first.
    """
    ledger_chain_pending(campaign_id=campaign.pk)
    head = LedgerHead.objects.filter(campaign=campaign).first()
    rows = (
        LedgerEntry.objects.filter(campaign=campaign)
        .order_by("seq", "id")
        .values("seq", "prev_hash", "entry_hash", "record")
        .iterator(chunk_size=5000)
    )
    problem = ledger.verify_entries(rows, expected_head=head.head_hash if head else ledger.GENESIS_HASH)
    if problem is not None:
        return problem
    count = LedgerEntry.objects.filter(campaign=campaign).count()
    if head is not None and head.seq != count - 1:
        return ledger.LedgerProblem(None, count, f"ledger head says seq {head.seq}, rows end at {count - 1}")
    return None


class ExportError(ValueError):
    """An export that cannot be made (nothing to export, bad target): the message is shown as it is."""


@dataclass(frozen=True)
class S3Target:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    lock_mode: str | None = None
    lock_days: int = 0
    legal_hold: bool = False


EXPORT_CHUNK = 2000
POINT_RADIUS_PX = 16.0


def evidence_set_for_export(*, campaign: Campaign, name: str) -> EvidenceSet:
    """The latest frozen version of the named set, or the latest version when none is frozen."""
    candidates = EvidenceSet.objects.filter(campaign=campaign, name=name)
    chosen = candidates.filter(frozen_at__isnull=False).order_by("-version").first()
    chosen = chosen or candidates.order_by("-version").first()
    if chosen is None:
        raise ExportError(f"campaign {campaign.slug} has no evidence set named {name!r}")
    return chosen


def evidence_export(
    *,
    campaign: Campaign,
    out: Path,
    evidence_set_name: str | None = None,
    created_by: User | None = None,
    s3: S3Target | None = None,
    organization: str = "",
    progress: Any = None,
) -> dict[str, Any]:
    """Write a BagIt evidence package to ``out`` and record the export in the ledger.

    The package is written into ``out.partial-<random>`` and renamed into place at the end, so an
    interrupted export never looks complete; the Export row turns complete, and the ledger gets its "export"
    record (with the manifest digest), in one transaction after the rename. ``Ledger-Head-Hash`` is the
    head at the start of the export: ledger.jsonl ends there, and the export record itself follows it.
    With ``s3``, the package is then uploaded as one tar; a failed upload leaves the local package
    complete and the Export row marked not uploaded.
    """
    from verification import packages

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(fraction, message)

    out = Path(out).absolute()
    if out.exists():
        raise ExportError(f"{out} already exists; choose a new path")
    if not out.parent.is_dir():
        raise ExportError(f"the folder {out.parent} does not exist")
    evidence_set = (
        evidence_set_for_export(campaign=campaign, name=evidence_set_name) if evidence_set_name else None
    )
    if evidence_set is not None:
        tasks = Task.objects.filter(
            pk__in=EvidenceItem.objects.filter(evidence_set=evidence_set).values("task_id")
        )
        scope = f"evidence set {evidence_set.name} v{evidence_set.version}"
    else:
        tasks = Task.objects.filter(
            campaign=campaign, status__in=[Task.Status.RETIRED, Task.Status.ADJUDICATED], is_gold=False
        )
        scope = "retired and adjudicated tasks"
    task_ids = list(tasks.order_by("id").values_list("id", flat=True))
    if not task_ids:
        raise ExportError(f"nothing to export: campaign {campaign.slug} has no {scope}")
    ledger_chain_pending(campaign_id=campaign.pk)  # the package holds every record committed until now
    head = LedgerHead.objects.filter(campaign=campaign).first()
    head_seq, head_hash = (head.seq, head.head_hash) if head else (-1, ledger.GENESIS_HASH)
    last_answer_id = (
        Answer.objects.filter(campaign=campaign).order_by("-id").values_list("id", flat=True).first()
    )
    export = Export.objects.create(
        campaign=campaign,
        evidence_set=evidence_set,
        path=str(out),
        ledger_head_hash=head_hash,
        created_by=created_by if created_by is not None and created_by.pk else None,
    )
    partial = packages.partial_dir(out)
    try:
        writer = packages.PackageWriter(partial)
        stats = _export_payload(
            writer=writer,
            campaign=campaign,
            task_ids=task_ids,
            tasks=tasks,
            last_answer_id=last_answer_id or 0,
            head_seq=head_seq,
            head_hash=head_hash,
            scope=scope,
            export=export,
            report=report,
        )
        bagging_date = timezone.now()
        manifest_sha256 = writer.finish(
            {
                "Source-Organization": organization or "Corroborate",
                "Bagging-Date": bagging_date.date().isoformat(),
                "External-Identifier": f"corroborate:{campaign.slug}:export-{export.pk}",
                "External-Description": f"Evidence package of campaign {campaign.slug} ({scope})",
                "Ledger-Head-Hash": head_hash,
                "Ledger-Head-Seq": str(head_seq),
                "Bag-Software-Agent": stats["software"],
            }
        )
        packages.publish(partial, out)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        Export.objects.filter(pk=export.pk).update(
            status=Export.Status.FAILED, message=f"{type(exc).__name__}: {exc}"[:500]
        )
        if isinstance(exc, packages.PackageError):
            raise ExportError(str(exc)) from exc
        raise
    files, size = writer.files, _tree_bytes(out)
    with transaction.atomic():
        ledger_append(
            campaign=campaign,
            record={
                "type": "export",
                "export": export.pk,
                "package": out.name,
                "external_identifier": f"corroborate:{campaign.slug}:export-{export.pk}",
                "scope": scope,
                "evidence_set": (
                    {"name": evidence_set.name, "version": evidence_set.version} if evidence_set else None
                ),
                "tasks": len(task_ids),
                "answers": stats["answers"],
                "files": files,
                "bytes": size,
                "manifest_sha256": manifest_sha256,
                "ledger_head_hash": head_hash,
                "ledger_head_seq": head_seq,
            },
        )
        Export.objects.filter(pk=export.pk).update(
            status=Export.Status.COMPLETE, files=files, bytes=size, message="complete"
        )
    summary: dict[str, Any] = {
        "campaign": campaign.slug,
        "export": export.pk,
        "path": str(out),
        "files": files,
        "bytes": size,
        "tasks": len(task_ids),
        "answers": stats["answers"],
        "volunteers": stats["volunteers"],
        "scope": scope,
        "ledger_head_hash": head_hash,
        "manifest_sha256": manifest_sha256,
        "uploaded": False,
    }
    if s3 is not None:
        report(0.95, "uploading to S3")
        summary.update(evidence_upload(export=export, s3=s3))
    report(1.0, "complete")
    return summary


def evidence_upload(*, export: Export, s3: S3Target) -> dict[str, Any]:
    """Upload a complete package as one tar; records the outcome on the Export row and in the ledger."""
    from verification import packages
    from verification import s3 as s3_module

    root = Path(export.path)
    tar_path = root.with_name(f"{root.name}.tar.partial-{uuid.uuid4().hex[:8]}")
    key = "/".join(p for p in (s3.prefix.strip("/"), f"{root.name}.tar") if p)
    try:
        tar_sha256, tar_bytes = packages.tar_write(root, tar_path)
        uri = s3_module.object_upload(
            client=s3_module.s3_client(endpoint_url=s3.endpoint_url),
            path=tar_path,
            bucket=s3.bucket,
            key=key,
            sha256_hex=tar_sha256,
            lock=s3_module.LockSettings(mode=s3.lock_mode, days=s3.lock_days, legal_hold=s3.legal_hold),
        )
    except (s3_module.UploadError, ValueError, OSError) as exc:
        message = f"not uploaded: {exc}"
        Export.objects.filter(pk=export.pk).update(uploaded=False, message=message[:500])
        return {"uploaded": False, "upload_error": str(exc)}
    finally:
        tar_path.unlink(missing_ok=True)
    with transaction.atomic():
        ledger_append(
            campaign=export.campaign,
            record={
                "type": "export_uploaded",
                "export": export.pk,
                "s3_uri": uri,
                "sha256": tar_sha256,
                "bytes": tar_bytes,
                "object_lock": {"mode": s3.lock_mode, "days": s3.lock_days, "legal_hold": s3.legal_hold},
            },
        )
        Export.objects.filter(pk=export.pk).update(uploaded=True, s3_uri=uri, message="complete, uploaded")
    return {"uploaded": True, "s3_uri": uri, "archive_sha256": tar_sha256}


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _media_names(media: Any) -> list[tuple[str, str]]:
    """(role, storage name) of each file a volunteer saw: images, clips and keyframes."""
    names: list[tuple[str, str]] = []
    if not isinstance(media, dict):
        return names
    for role, value in media.items():
        if isinstance(value, str) and not role.endswith("_mime") and "/" in value:
            names.append((role, value))
        elif isinstance(value, list):
            for item in value:
                name = item.get("name") if isinstance(item, dict) else item
                if isinstance(name, str) and "/" in name:
                    names.append((role, name))
    return names


def _copy_media(writer: Any, relpath: str, name: str) -> bool:
    from django.core.files.storage import default_storage

    try:
        local = default_storage.path(name)
    except NotImplementedError:
        local = None
    try:
        if local is not None:
            writer.add_file(relpath, local)
        else:
            with default_storage.open(name, "rb") as stream:
                writer.add_stream(relpath, stream)
    except FileNotFoundError:
        logger.warning("media missing from storage", extra={"name": name})
        return False
    return True


def _export_payload(
    *,
    writer: Any,
    campaign: Campaign,
    task_ids: list[int],
    tasks: Any,
    last_answer_id: int,
    head_seq: int,
    head_hash: str,
    scope: str,
    export: Export,
    report: Any,
) -> dict[str, Any]:
    import json
    from array import array

    import numpy as np

    from tasks.services import SOFTWARE
    from verification import figures, packages

    labels_order = [c for c in _choices(campaign)]
    agreements = array("d")
    confidences = array("d")
    polygons: list[Any] = []
    polygon_labels: list[str] = []
    task_geo: dict[int, tuple[list[float], int, int]] = {}
    status_counts: dict[str, int] = {}
    label_counts: dict[str, int] = {}
    method_counts: dict[str, int] = {}
    source_ids: set[int] = set()
    decisions_count = 0
    shared_media: dict[str, str] = {}
    missing_media = 0
    with (
        writer.open("consensus.csv") as consensus_out,
        writer.open("evidence.geojson") as geojson_out,
        writer.open("evidence.kml") as kml_out,
    ):
        consensus_csv = packages.write_csv(consensus_out, packages.CONSENSUS_COLUMNS)
        geojson = packages.GeoJsonStream(geojson_out)
        kml = packages.KmlStream(kml_out, name=f"{campaign.title} ({scope})", labels=labels_order)
        for start in range(0, len(task_ids), EXPORT_CHUNK):
            chunk = task_ids[start : start + EXPORT_CHUNK]
            consensus = {
                row["task_id"]: row
                for row in Consensus.objects.filter(task_id__in=chunk).values(
                    "task_id", "label", "confidence", "agreement", "entropy", "n_answers", "method"
                )
            }
            decisions = {
                row["task_id"]: row
                for row in Decision.objects.filter(task_id__in=chunk)
                .order_by("task_id", "id")
                .values("task_id", "label", "note", "created_at")
            }
            rows = (
                tasks.filter(pk__in=chunk)
                .order_by("id")
                .values(
                    "id",
                    "key",
                    "kind",
                    "status",
                    "bbox",
                    "footprint",
                    "window",
                    "start_seconds",
                    "end_seconds",
                    "media",
                    "source_id",
                    "source__sha256",
                    "after_source_id",
                    "after_source__sha256",
                )
            )
            for row in rows:
                task_id = row["id"]
                media_paths = []
                for role, name in _media_names(row["media"]):
                    if role.startswith("overview"):
                        relpath = shared_media.get(name)
                        if relpath is None:
                            relpath = f"media/shared/{name.replace('/', '_')}"
                            if _copy_media(writer, relpath, name):
                                shared_media[name] = relpath
                            else:
                                missing_media += 1
                                continue
                    else:
                        # Flat names grouped by task id: one folder per task costs a mkdir each (seconds at 50,000 tasks).
                        relpath = f"media/task-{task_id}-{role}-{Path(name).name}"
                        if not _copy_media(writer, relpath, name):
                            missing_media += 1
                            continue
                    media_paths.append(f"data/{relpath}")
                found: dict[str, Any] = dict(consensus.get(task_id) or {})
                decision: dict[str, Any] | None = decisions.get(task_id)  # type: ignore[assignment]
                label = (decision["label"] if decision else "") or found.get("label") or ""
                task = {
                    **row,
                    "source_sha256": row["source__sha256"],
                    "after_source_sha256": row["after_source__sha256"],
                    "label": found.get("label"),
                    "confidence": found.get("confidence"),
                    "agreement": found.get("agreement"),
                    "entropy": found.get("entropy"),
                    "n_answers": found.get("n_answers", 0),
                    "method": found.get("method"),
                    "decision_label": decision["label"] if decision else None,
                    "decision_note": decision["note"] if decision else None,
                    "decided_at": decision["created_at"].isoformat() if decision else None,
                    "media_paths": media_paths,
                }
                consensus_csv.writerow(packages.consensus_row(task))
                geojson.add(packages.task_feature(task))
                kml.add_task(task)
                source_ids.add(row["source_id"])
                if row["after_source_id"]:
                    source_ids.add(row["after_source_id"])
                status_counts[row["status"]] = status_counts.get(row["status"], 0) + 1
                label_counts[label or "(none)"] = label_counts.get(label or "(none)", 0) + 1
                decisions_count += int(decision is not None)
                if found:
                    agreements.append(float(found["agreement"]))
                    confidences.append(float(found["confidence"]))
                    method_counts[found["method"]] = method_counts.get(found["method"], 0) + 1
                geometry = packages._polygon(row["footprint"], row["bbox"])
                if geometry is not None:
                    polygons.append(np.asarray(geometry["coordinates"][0], dtype=float)[:, :2])
                    polygon_labels.append(label)
                    window = row["window"] or {}
                    task_geo[task_id] = (
                        list(row["bbox"] or []),
                        int(window.get("width") or 0),
                        int(window.get("height") or 0),
                    )
            report(0.05 + 0.45 * min(start + EXPORT_CHUNK, len(task_ids)) / len(task_ids), "tasks")

        # Answers: pseudonyms from a key that lives only in this function.
        key = packages.new_pseudonym_key()
        point_questions = [
            q["key"] for q in campaign.question_set.get("questions", []) if q.get("type") == "points"
        ]
        points: dict[int, list[tuple[Any, float, float, str]]] = {}
        volunteers: set[int] = set()
        times = array("d")
        answers = 0
        with writer.open("answers.csv") as answers_out:
            answers_csv = packages.write_csv(answers_out, packages.ANSWER_COLUMNS)
            query = (
                Answer.objects.filter(task_id__in=tasks.values("id"), id__lte=last_answer_id)
                .order_by("id")
                .values_list("id", "task_id", "volunteer_id", "label", "answer", "duration_ms", "created_at")
            )
            for answer_id, task_id, volunteer_id, label, payload, duration_ms, created_at in query.iterator(
                chunk_size=5000
            ):
                answers_csv.writerow(
                    packages.answer_row(
                        {
                            "id": answer_id,
                            "task_id": task_id,
                            "volunteer_id": volunteer_id,
                            "label": label,
                            "answer": payload,
                            "duration_ms": duration_ms,
                            "created_at": created_at,
                        },
                        key,
                    )
                )
                answers += 1
                volunteers.add(volunteer_id)
                times.append(created_at.timestamp())
                if point_questions and isinstance(payload, dict) and task_id in task_geo:
                    for question in point_questions:
                        for xy in payload.get(question) or []:
                            points.setdefault(task_id, []).append((volunteer_id, xy[0], xy[1], question))
                if answers % 20000 == 0:
                    report(0.5 + 0.2 * answers / max(1, len(task_ids) * campaign.min_answers), "answers")
        del key
        n_points = 0
        for task_id, marks in sorted(points.items()):
            bbox, width, height = task_geo[task_id]
            if len(bbox) != 4 or not width or not height:
                continue
            for question in sorted({m[3] for m in marks}):
                clusters = aggregation.cluster_points(
                    [(v, x, y) for v, x, y, q in marks if q == question],
                    radius_m=POINT_RADIUS_PX,
                    min_volunteers=2,
                )
                for index, cluster in enumerate(clusters):
                    west, south, east, north = bbox
                    point = {
                        "task_id": task_id,
                        "index": index,
                        "question": question,
                        "lon": west + (east - west) * cluster["x_m"] / width,
                        "lat": north - (north - south) * cluster["y_m"] / height,
                        "n_volunteers": cluster["n_volunteers"],
                        "spread_px": cluster["spread_m"],
                    }
                    geojson.add(packages.point_feature(point))
                    kml.add_point(point)
                    n_points += 1
        geojson.close()
        kml.close()
    report(0.75, "provenance")

    sources = [
        {
            "id": s["id"],
            "sha256": s["sha256"],
            "size_bytes": s["size_bytes"],
            "original_name": s["original_name"],
            "kind": s["kind"],
            "role": s["role"],
            "ingested_at": s["created_at"].isoformat(),
            "metadata": s["metadata"],
        }
        for s in Source.objects.filter(pk__in=source_ids)
        .order_by("id")
        .values("id", "sha256", "size_bytes", "original_name", "kind", "role", "created_at", "metadata")
    ]
    writer.write_bytes(
        "provenance/sources.json",
        (json.dumps({"sources": sources}, indent=2, ensure_ascii=False, default=str) + "\n").encode(),
    )
    prev = ledger.GENESIS_HASH
    with (
        writer.open("provenance/ledger.jsonl") as ledger_out,
        writer.open("provenance/custody.jsonl") as custody_out,
    ):
        entries = (
            LedgerEntry.objects.filter(campaign=campaign, seq__lte=head_seq)
            .order_by("seq")
            .values("seq", "prev_hash", "entry_hash", "record")
            .iterator(chunk_size=5000)
        )
        for expected_seq, entry in enumerate(entries):
            # Re-check the chain while copying it: a tampered database ledger is refused, not exported.
            if (
                entry["seq"] != expected_seq
                or entry["prev_hash"] != prev
                or ledger.entry_hash(entry["prev_hash"], entry["record"]) != entry["entry_hash"]
            ):
                raise ExportError(
                    f"the ledger of campaign {campaign.slug} is broken at seq {expected_seq}; "
                    "run verify_ledger and investigate before exporting"
                )
            prev = entry["entry_hash"]
            ledger_out.write(packages.ledger_line(entry))
            event = packages.custody_event(entry)
            if event is not None:
                custody_out.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")
        if prev != head_hash:
            raise ExportError(f"the ledger of campaign {campaign.slug} does not end at its head")
        custody_out.write(
            json.dumps(
                {
                    "event": "export",
                    "at": timezone.now().isoformat(),
                    "this_package": True,
                    "export": export.pk,
                    "ledger_head_hash": head_hash,
                    "ledger_head_seq": head_seq,
                    "note": "this export's own ledger record follows the head and carries the manifest digest",
                }
            )
            + "\n"
        )
    report(0.8, "figures")
    agreement_values = np.frombuffer(agreements, dtype=float) if agreements else np.zeros(0)
    writer.write_bytes(
        "figures/agreement_histogram.png",
        figures.agreement_histogram(agreement_values, title=f"Agreement, {campaign.slug}"),
    )
    writer.write_bytes(
        "figures/overview_map.png",
        figures.overview_map(polygons, polygon_labels, title=f"Results, {campaign.slug} ({scope})"),
    )
    writer.write_bytes(
        "figures/progress_over_time.png",
        figures.progress_over_time(
            np.frombuffer(times, dtype=float) if times else np.zeros(0),
            title=f"Answers over time, {campaign.slug}",
        ),
    )
    stats = {
        "software": SOFTWARE,
        "tasks": len(task_ids),
        "answers": answers,
        "volunteers": len(volunteers),
        "decisions": decisions_count,
        "status_counts": status_counts,
        "label_counts": label_counts,
        "method_counts": method_counts,
        "agreement": agreement_values,
        "confidence": np.frombuffer(confidences, dtype=float) if confidences else np.zeros(0),
        "points": n_points,
        "sources": len(sources),
        "media_files": sum(1 for path, _, _ in writer.manifest if path.startswith("data/media/")),
        "missing_media": missing_media,
    }
    writer.write_bytes(
        "methodology.md",
        _methodology(
            campaign=campaign, scope=scope, stats=stats, head_hash=head_hash, head_seq=head_seq
        ).encode(),
    )
    return stats


def _methodology_audit(campaign: Campaign) -> list[str]:
    """The campaign's sampled expert audit, as methodology.md reports it (the whole campaign, not the set)."""
    from verification.selectors import audit_report

    report = audit_report(campaign)
    if not report["judged"]:
        return [
            f"No expert audit has been answered yet ({report['drawn']} tasks drawn). The crowd's accuracy "
            "rests on the calibrated confidence above and on gold tasks."
        ]
    lines = [
        f"Reviewers answered, without seeing the crowd's label, {report['answered']} tasks drawn at random "
        f"from those the crowd retired ({report['unsure']} answered unsure and are left out). The crowd's "
        f"label matched theirs on {report['agree']} of {report['judged']}: {report['accuracy']:.3f} "
        f"(95% Wilson interval {report['low']:.3f}-{report['high']:.3f}), where the crowd's mean confidence "
        f"on the same tasks was {report['mean_confidence']:.3f}. The draws and answers are in the ledger "
        "(`audit_draw`, `audit`)."
    ]
    lines += [
        f"- Crowd label `{row['label']}`: {row['agree']} of {row['n']} confirmed ({row['accuracy']:.3f}, "
        f"{row['low']:.3f}-{row['high']:.3f})"
        for row in report["by_label"]
    ]
    return lines


def _methodology(
    *, campaign: Campaign, scope: str, stats: dict[str, Any], head_hash: str, head_seq: int
) -> str:
    import numpy as np

    agreement = stats["agreement"]
    confidence = stats["confidence"]

    def figure(values: Any, fn: Any) -> str:
        return f"{float(fn(values)):.3f}" if len(values) else "n/a"

    lines = [
        f"# Methodology: {campaign.title}",
        "",
        f"Campaign `{campaign.slug}` ({campaign.kind}). {campaign.description}".strip(),
        "",
        f"This package holds the campaign's {scope}: {stats['tasks']} tasks, {stats['answers']} answers "
        f"from {stats['volunteers']} volunteers, {stats['decisions']} reviewer decisions, "
        f"{stats['sources']} original sources and {stats['media_files']} media files.",
        "",
        "## Question set",
        "",
        f"Primary question (gives the consensus label): `{campaign.question_set.get('primary')}`.",
        "",
    ]
    for question in campaign.question_set.get("questions", []):
        required = "required" if question.get("required", True) else "optional"
        lines.append(f"- `{question['key']}` ({question['type']}, {required}): {question.get('text', '')}")
        for choice in question.get("choices", []):
            lines.append(f"  - `{choice['value']}`: {choice.get('label', '')}")
    state = campaign.aggregation_state or {}
    methods = ", ".join(f"{m} ({n} tasks)" for m, n in sorted(stats["method_counts"].items())) or "none"
    lines += [
        "",
        "## Redundancy and retirement",
        "",
        f"- Each task is shown to at least {campaign.min_answers} and at most {campaign.max_answers} "
        "volunteers; no volunteer sees a task twice or other volunteers' answers before answering.",
        f"- A task retires once the calibrated confidence of its consensus label reaches "
        f"{campaign.retirement_confidence:.2f} with at least {campaign.min_answers} answers and a lead of "
        f"{aggregation.RETIREMENT_MIN_MARGIN} votes; the confidence needed rises with every further answer (to "
        f"{aggregation.retirement_threshold(campaign.max_answers, min_answers=campaign.min_answers, threshold=campaign.retirement_confidence):.4f} "
        f"at {campaign.max_answers}), since a task that needs many answers is a hard one. A task whose label is "
        f"settled (the answers it could still get, up to {campaign.max_answers}, would change its label with "
        f"probability at most {aggregation.RETIREMENT_SETTLED}) closes at once: it retires if its confidence "
        f"reaches {campaign.retirement_confidence:.2f}, and goes to expert review otherwise. A task that "
        f"reaches {campaign.max_answers} answers without that confidence goes to expert review (adjudication "
        'with a written note). Each consensus records why its task closed. "Unsure" answers are recorded but '
        "never counted as a vote.",
        f"- Gold (expert-answered) tasks: share {campaign.gold_share:.2f} for experienced volunteers, more for "
        "newcomers; they measure each volunteer's reliability and are not part of the evidence.",
        "",
        "## Aggregation",
        "",
        f"- Method configured: `{campaign.aggregation_method}`; methods behind the exported consensus: {methods}.",
        f"- Last full refit: {state.get('refit_at', 'none')}; temperature {state.get('temperature', 1.0)}; "
        f"class prior {state.get('class_prior')}.",
        _expert_labels_line(state.get("expert_labels")),
        *_common_accuracy_lines(state),
        "- Confidence is the calibrated probability that the consensus label is right. Without enough expert "
        "answers, each answer is scored by its volunteer's reliability estimated without that task, and the "
        "posterior (class prior included) is tempered by the temperatures that best predict each answer from "
        "the other answers of its task, averaged over how plausible each is, or by the temperature refitted on half of the tasks "
        "when that one is lower. With at least 30 gold and audit answers, the "
        "temperature is fitted on them instead, and a logistic correction fitted on them is applied too, "
        "averaged over its own uncertainty so that a few dozen expert answers cannot overrule the crowd's "
        "evidence.",
        f"- Software: {stats['software']} (verification.aggregation).",
        "",
        "## Agreement statistics",
        "",
        f"- Agreement (share of counted answers that give the consensus label): mean "
        f"{figure(agreement, np.mean)}, median {figure(agreement, np.median)}, "
        f"share of tasks at or above 0.8: {figure(agreement, lambda a: (a >= 0.8).mean())}.",
        f"- Confidence: mean {figure(confidence, np.mean)}, minimum {figure(confidence, np.min)}.",
        "- Tasks by status: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["status_counts"].items())),
        "- Tasks by final label (reviewer decision first, else consensus): "
        + ", ".join(f"{k} {v}" for k, v in sorted(stats["label_counts"].items())),
        f"- Consensus points (marks by at least two volunteers within {POINT_RADIUS_PX:.0f} px, placed by "
        f"linear interpolation in the tile's bounding box): {stats['points']}.",
        "",
        "## Expert audit",
        "",
        *_methodology_audit(campaign),
        "",
        "## Privacy",
        "",
        "Volunteers appear in answers.csv under pseudonyms computed with a random key made for this package "
        "and then discarded: the same volunteer has different pseudonyms in different packages, and no "
        "account id, email or IP address is included. The ledger names volunteers only by a salted "
        "commitment.",
        "",
        "## Chain of custody",
        "",
        "Every original was hashed (SHA-256) while it was stored at ingest and is never modified "
        "(provenance/sources.json). Each derivation (tiles, keyframes) is recorded with its parameters and "
        "software version, and every answer, decision and export is appended to the campaign's hash-chained "
        f"ledger. provenance/ledger.jsonl holds that ledger up to seq {head_seq}, head `{head_hash}` "
        "(Ledger-Head-Hash in bag-info.txt); provenance/custody.jsonl lists its ingest, derive, review and "
        "export events in order.",
        "",
    ]
    if stats["missing_media"]:
        lines += [f"Note: {stats['missing_media']} media files were missing from storage at export.", ""]
    return "\n".join(lines)
