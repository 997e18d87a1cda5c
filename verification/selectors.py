"""Reads for answers and consensus: per-task rows, campaign statistics."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from tasks.models import Campaign, Task
from verification.models import Consensus, Decision


def consensus_payload(task: Task) -> dict[str, Any] | None:
    consensus = Consensus.objects.filter(task=task).first()
    if consensus is None:
        return None
    decision = Decision.objects.filter(task=task).order_by("-id").first()
    return {
        "label": decision.label if decision else consensus.label,
        "crowd_label": consensus.label,
        "confidence": consensus.confidence,
        "agreement": consensus.agreement,
        "n_answers": consensus.n_answers,
        "distribution": consensus.distribution,
        "reason": consensus.reason,
        "decision": {"label": decision.label, "note": decision.note} if decision else None,
    }


def consensus_rows(campaign: Campaign) -> QuerySet[Task]:
    return (
        Task.objects.filter(campaign=campaign, is_gold=False, source__ready=True)
        .select_related("consensus")
        .order_by("id")
    )


def consensus_row(task: Task, latest_decisions: dict[int, str]) -> dict[str, Any]:
    consensus: Consensus | None = getattr(task, "consensus", None)
    label = latest_decisions.get(task.pk) or (consensus.label if consensus else "")
    return {
        "task_id": task.pk,
        "label": label or None,
        "confidence": consensus.confidence if consensus else 0.0,
        "agreement": consensus.agreement if consensus else 0.0,
        "n_answers": consensus.n_answers if consensus else 0,
        "status": task.status,
    }


def latest_decisions(campaign: Campaign) -> dict[int, str]:
    latest: dict[int, str] = {}
    for task_id, label in (
        Decision.objects.filter(task__campaign=campaign).order_by("id").values_list("task_id", "label")
    ):
        latest[task_id] = label
    return latest
