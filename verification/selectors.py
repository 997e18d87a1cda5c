"""Reads for answers and consensus: per-task rows, campaign statistics."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.db.models import Case, QuerySet, Value, When

from tasks.models import Campaign, Task
from tasks.questions import UNSURE
from verification.aggregation import wilson_interval
from verification.models import AuditItem, Consensus, Decision


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


_CONSENSUS_COLUMNS = (
    "pk",
    "status",
    "consensus__label",
    "consensus__confidence",
    "consensus__agreement",
    "consensus__n_answers",
)


def consensus_table(campaign: Campaign, *, footprints: bool = False) -> list[dict[str, Any]]:
    """``consensus_row`` for every task of the campaign, read as plain columns rather than model instances.

    For whole-campaign reads (the API's consensus list, the map, the label chart): building a Task and a
    Consensus for each of 40,000 tiles, with their JSON fields decoded, took 8 to 10 s of the request
    (benchmarks/researcher_pages.py). With ``footprints``, only tasks with a footprint, each with it.
    """
    decisions = latest_decisions(campaign)
    queryset = consensus_rows(campaign)
    columns: tuple[str, ...] = _CONSENSUS_COLUMNS
    if footprints:
        queryset = queryset.filter(footprint__isnull=False)
        columns = (*columns, "footprint")
    rows = []
    for values in queryset.values_list(*columns).iterator(chunk_size=5000):
        task_id, status, label, confidence, agreement, n_answers = values[:6]
        row = {
            "task_id": task_id,
            "label": decisions.get(task_id) or label or None,
            "confidence": confidence if confidence is not None else 0.0,
            "agreement": agreement if agreement is not None else 0.0,
            "n_answers": n_answers if n_answers is not None else 0,
            "status": status,
            "adjudicated": task_id in decisions,
        }
        if footprints:
            row["footprint"] = values[6]
        rows.append(row)
    return rows


def latest_decisions(campaign: Campaign) -> dict[int, str]:
    latest: dict[int, str] = {}
    for task_id, label in (
        Decision.objects.filter(task__campaign=campaign).order_by("id").values_list("task_id", "label")
    ):
        latest[task_id] = label
    return latest


# ---------------------------------------------------------------- researcher workspace

from django.db.models import Count, Q  # noqa: E402 (this section is appended by the workspace)


class FilterError(ValueError):
    """An evidence-set or promotion filter that cannot be applied; the message is shown as it is."""


def effective_label(task: Task, decisions: dict[int, str]) -> str:
    """A reviewer's latest decision wins over the crowd's consensus."""
    if task.pk in decisions:
        return decisions[task.pk]
    consensus: Consensus | None = getattr(task, "consensus", None)
    return consensus.label if consensus is not None else ""


def _as_list(value: Any) -> list[str]:
    if value in (None, "", []):
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def filters_normalise(filters: dict[str, Any]) -> dict[str, Any]:
    """Check filter keys and values; returns the canonical form stored with evidence sets and rules."""
    known = {"labels", "label", "min_confidence", "statuses", "status", "aoi"}
    unknown = set(filters) - known
    if unknown:
        raise FilterError(f"unknown filter {sorted(unknown)[0]!r}")
    out: dict[str, Any] = {}
    labels = _as_list(filters.get("labels")) + _as_list(filters.get("label"))
    if labels:
        out["labels"] = sorted(set(labels))
    statuses = _as_list(filters.get("statuses")) + _as_list(filters.get("status"))
    bad = [s for s in statuses if s not in Task.Status.values]
    if bad:
        raise FilterError(f"unknown status {bad[0]!r}")
    if statuses:
        out["statuses"] = sorted(set(statuses))
    if filters.get("min_confidence") not in (None, ""):
        try:
            minimum = float(filters["min_confidence"])
        except (TypeError, ValueError) as exc:
            raise FilterError("min_confidence must be a number between 0 and 1") from exc
        if not 0 <= minimum <= 1:
            raise FilterError("min_confidence must be a number between 0 and 1")
        out["min_confidence"] = minimum
    if filters.get("aoi"):
        aoi_geometry(filters["aoi"])
        out["aoi"] = filters["aoi"]
    return out


def aoi_geometry(aoi: Any) -> Any:
    """A shapely (Multi)Polygon from GeoJSON (text or object), or FilterError."""
    from tasks import imagery

    try:
        return imagery.parse_aoi(aoi)
    except imagery.ImageryError as exc:
        raise FilterError(str(exc)) from exc


def tasks_matching(*, campaign: Campaign, filters: dict[str, Any]) -> list[Task]:
    """Non-gold tasks of a campaign whose effective label, confidence, status and footprint match."""
    from shapely.geometry import shape
    from shapely.geometry.base import BaseGeometry

    rule = filters_normalise(filters)
    decisions = latest_decisions(campaign)
    queryset = consensus_rows(campaign)
    if rule.get("statuses"):
        queryset = queryset.filter(status__in=rule["statuses"])
    if "min_confidence" in rule:
        # Adjudicated tasks carry a reviewer's word, which counts as certain.
        queryset = queryset.filter(
            Q(consensus__confidence__gte=rule["min_confidence"]) | Q(status=Task.Status.ADJUDICATED)
        )
    area: BaseGeometry | None = aoi_geometry(rule["aoi"]) if rule.get("aoi") else None
    labels = set(rule.get("labels", []))
    matched = []
    for task in queryset:
        if labels and effective_label(task, decisions) not in labels:
            continue
        if area is not None:
            if not task.footprint:
                continue
            try:
                if not area.intersects(shape(task.footprint)):
                    continue
            except (ValueError, TypeError, AttributeError):
                continue
        matched.append(task)
    return matched


def answers_per_hour(campaign: Campaign, *, hours: int = 48) -> list[tuple[Any, int]]:
    from django.db.models.functions import TruncHour

    from verification.models import Answer

    rows = (
        Answer.objects.filter(campaign=campaign)
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(n=Count("id"))
        .order_by("hour")
    )
    return [(row["hour"], row["n"]) for row in rows][-hours:]


def retired_share_over_time(campaign: Campaign, *, hours: int = 48) -> list[tuple[Any, float]]:
    """Cumulative share of tasks no longer open, by the hour their consensus last changed."""
    from django.db.models.functions import TruncHour

    total = consensus_rows(campaign).count()
    if not total:
        return []
    rows = (
        Consensus.objects.filter(task__campaign=campaign, task__is_gold=False)
        .exclude(task__status=Task.Status.OPEN)
        .annotate(hour=TruncHour("updated_at"))
        .values("hour")
        .annotate(n=Count("id"))
        .order_by("hour")
    )
    cumulative = 0
    points: list[tuple[Any, float]] = []
    for row in rows:
        cumulative += row["n"]
        points.append((row["hour"], cumulative / total))
    return points[-hours:]


def agreement_histogram(campaign: Campaign, *, bins: int = 10) -> list[tuple[str, int]]:
    counts = [0] * bins
    for agreement in Consensus.objects.filter(
        task__campaign=campaign, task__is_gold=False, n_answers__gt=0
    ).values_list("agreement", flat=True):
        counts[min(int(agreement * bins), bins - 1)] += 1
    return [(f"{i / bins:.1f}", n) for i, n in enumerate(counts)]


def label_distribution(campaign: Campaign) -> list[tuple[str, int]]:
    """Tasks per label, a reviewer's decision counting over the crowd's consensus: the crowd's labels
    counted by the database, the decided tasks (few) then moved to their decision's label."""
    decisions = latest_decisions(campaign)
    decided = list(
        consensus_rows(campaign).filter(pk__in=list(decisions)).values_list("pk", "consensus__label")
    )
    counts: dict[str, int] = {}
    for row in consensus_rows(campaign).order_by().values("consensus__label").annotate(n=Count("id")):
        if row["consensus__label"]:
            counts[row["consensus__label"]] = row["n"]
    for task_id, crowd_label in decided:
        if crowd_label:
            counts[crowd_label] -= 1
        counts[decisions[task_id]] = counts.get(decisions[task_id], 0) + 1
    return sorted(((label, n) for label, n in counts.items() if n), key=lambda item: (-item[1], item[0]))


def status_counts(campaign: Campaign) -> dict[str, int]:
    counts = {status: 0 for status in Task.Status.values}
    for row in consensus_rows(campaign).order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


# Volunteers the dashboard lists by default: a campaign may have tens of thousands (Decode Darfur had 28,600),
# and a table of all of them was megabytes of HTML (benchmarks/researcher_pages.py).
VOLUNTEER_ROWS = 100


@dataclass(frozen=True)
class VolunteerTable:
    rows: list[dict[str, Any]]
    total: int  # volunteers who answered in this campaign
    find: str  # the pseudonym (or its start) asked for, if any


def volunteer_table(campaign: Campaign, *, find: str = "", limit: int | None = None) -> VolunteerTable:
    """Pseudonyms only: answers, reliability, gold record, flags and the block switch of this campaign.

    The ``limit`` volunteers with most answers, and every flagged or blocked one (those a researcher has
    to act on), flagged and blocked first; or, with ``find`` (a pseudonym such as ``V-1a2b3c4d`` or its
    start), the volunteers whose pseudonym starts with it.
    """
    from tasks.models import Volunteer
    from verification.models import Answer, VolunteerReliability

    limit = limit or VOLUNTEER_ROWS
    answers = Answer.objects.filter(campaign=campaign)
    total = answers.values("volunteer").distinct().count()
    find = find.strip()
    prefix = find.lower().removeprefix("v-")
    if find:
        if not re.fullmatch(r"[0-9a-f]{1,8}", prefix):
            return VolunteerTable([], total, find)
        ids = list(
            Volunteer.objects.filter(public_id__startswith=prefix, answers__campaign=campaign)
            .distinct()
            .values_list("pk", flat=True)[:limit]
        )
    else:
        busiest = answers.values("volunteer").annotate(n=Count("id")).order_by("-n", "volunteer")[:limit]
        attention = VolunteerReliability.objects.filter(campaign=campaign).filter(
            Q(flagged=True) | Q(blocked=True)
        )
        ids = [row["volunteer"] for row in busiest] + list(
            attention.values_list("volunteer_id", flat=True)[: 5 * limit]
        )
    answered = dict(
        answers.filter(volunteer_id__in=ids)
        .values("volunteer")
        .annotate(n=Count("id"))
        .values_list("volunteer", "n")
    )
    stats = {
        r.volunteer_id: r
        for r in VolunteerReliability.objects.filter(campaign=campaign, volunteer_id__in=ids)
    }
    rows: list[dict[str, Any]] = []
    for volunteer in Volunteer.objects.filter(pk__in=ids).only("public_id", "is_blocked"):
        stat = stats.get(volunteer.pk)
        rows.append(
            {
                "public_id": str(volunteer.public_id),
                "pseudonym": volunteer.pseudonym,
                "answers": answered.get(volunteer.pk, 0),
                "reliability": stat.reliability if stat else None,
                "n_gold": stat.n_gold if stat else 0,
                "n_gold_correct": stat.n_gold_correct if stat else 0,
                "flagged": bool(stat and stat.flagged),
                "blocked": bool(stat and stat.blocked),
                "blocked_everywhere": volunteer.is_blocked,
            }
        )
    rows.sort(key=lambda r: (not (r["flagged"] or r["blocked"]), -r["answers"], r["pseudonym"]))
    return VolunteerTable(rows, total, find)


def _review_queryset(campaign: Campaign, *, label: str | None = None) -> QuerySet[Task]:
    """Tasks that need a reviewer, in the order a reviewer should take them: needs_review first, then answered
    tasks below the retirement confidence; least confident first within each."""
    queryset = consensus_rows(campaign).filter(
        Q(status=Task.Status.NEEDS_REVIEW)
        | Q(
            status__in=[Task.Status.OPEN, Task.Status.RETIRED],
            consensus__n_answers__gt=0,
            consensus__confidence__lt=campaign.retirement_confidence,
        )
    )
    if label:
        queryset = queryset.filter(consensus__label=label)
    return queryset.annotate(
        review_rank=Case(When(status=Task.Status.NEEDS_REVIEW, then=Value(0)), default=Value(1))
    ).order_by("review_rank", "consensus__confidence", "id")


def review_queue(
    campaign: Campaign, *, limit: int = 200, offset: int = 0, label: str | None = None
) -> list[dict[str, Any]]:
    """One page of the review queue (see ``_review_queryset``), optionally of one crowd label."""
    decisions = latest_decisions(campaign)
    return [
        {
            **consensus_row(task, decisions),
            "reason": getattr(getattr(task, "consensus", None), "reason", ""),
            "reason_params": getattr(getattr(task, "consensus", None), "reason_params", None),
        }
        for task in _review_queryset(campaign, label=label)[offset : offset + limit]
    ]


def review_queue_count(campaign: Campaign, *, label: str | None = None) -> int:
    return _review_queryset(campaign, label=label).count()


def task_answers(task: Task) -> list[dict[str, Any]]:
    from verification.models import Answer, VolunteerReliability

    reliabilities = dict(
        VolunteerReliability.objects.filter(campaign_id=task.campaign_id).values_list(
            "volunteer_id", "reliability"
        )
    )
    blocked = set(
        VolunteerReliability.objects.filter(campaign_id=task.campaign_id, blocked=True).values_list(
            "volunteer_id", flat=True
        )
    )
    return [
        {
            "pseudonym": answer.volunteer.pseudonym,
            "label": answer.label,
            "answer": answer.answer,
            "reliability": reliabilities.get(answer.volunteer_id),
            "blocked": answer.volunteer_id in blocked or answer.volunteer.is_blocked,
            "created_at": answer.created_at,
        }
        for answer in Answer.objects.filter(task=task).select_related("volunteer").order_by("id")
    ]


def task_decisions(task: Task) -> list[Decision]:
    """Newest first: the first is the one in force."""
    return list(Decision.objects.filter(task=task).select_related("reviewer").order_by("-id"))


def campaign_overview_bounds(campaign: Campaign) -> list[list[float]] | None:
    """[[south, west], [north, east]] of the whole plan grid that Task.media["overview"] shows.

    Extrapolated from the tiles' bboxes and pixel windows, because the overview covers the full grid even
    where edge tiles were skipped.
    """
    rows: list[tuple[Any, Any, Any]] = list(
        Task.objects.filter(campaign=campaign, bbox__isnull=False, window__isnull=False).values_list(
            "bbox", "window", "media"
        )[:5000]
    )
    tasks = [t for t in rows if t[2].get("overview") and t[1] and "grid_width" in t[1]]
    if not tasks:
        return None
    overview = tasks[0][2]["overview"]
    tasks = [t for t in tasks if t[2].get("overview") == overview]
    west = min(t[0][0] for t in tasks)
    south = min(t[0][1] for t in tasks)
    east = max(t[0][2] for t in tasks)
    north = max(t[0][3] for t in tasks)
    col_min = min(t[1]["col_off"] for t in tasks)
    col_max = max(t[1]["col_off"] + t[1]["width"] for t in tasks)
    row_min = min(t[1]["row_off"] for t in tasks)
    row_max = max(t[1]["row_off"] + t[1]["height"] for t in tasks)
    grid_width, grid_height = tasks[0][1]["grid_width"], tasks[0][1]["grid_height"]
    lon_px = (east - west) / max(col_max - col_min, 1)
    lat_px = (north - south) / max(row_max - row_min, 1)
    grid_west = west - col_min * lon_px
    grid_north = north + row_min * lat_px
    return [
        [grid_north - grid_height * lat_px, grid_west],
        [grid_north, grid_west + grid_width * lon_px],
    ]


def label_colours(campaign: Campaign) -> dict[str, str]:
    """A stable colour per choice of the primary question (the same as in evidence packages)."""
    from verification.packages import label_colour

    primary = campaign.question_set["primary"]
    question = next(q for q in campaign.question_set["questions"] if q["key"] == primary)
    seen: list[str] = []
    return {choice["value"]: label_colour(choice["value"], seen) for choice in question.get("choices", [])}


def campaign_geojson(campaign: Campaign, *, task_url: Any) -> dict[str, Any]:
    """A FeatureCollection of the campaign's imagery tasks with label, confidence, status and colour.

    ``task_url(task_id)`` gives each task's page.
    """
    colours = label_colours(campaign)
    features = []
    for row in consensus_table(campaign, footprints=True):
        label = row["label"]
        features.append(
            {
                "type": "Feature",
                "id": row["task_id"],
                "geometry": row["footprint"],
                "properties": {
                    "task_id": row["task_id"],
                    "label": label,
                    "confidence": round(row["confidence"], 4),
                    "agreement": round(row["agreement"], 4),
                    "n_answers": row["n_answers"],
                    "status": row["status"],
                    "adjudicated": row["adjudicated"],
                    "color": colours.get(label, "#7f7f7f") if label else "#bbbbbb",
                    "url": task_url(row["task_id"]),
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def evidence_set_rows(evidence_set: Any) -> list[dict[str, Any]]:
    from verification.models import EvidenceItem

    campaign = evidence_set.campaign
    decisions = latest_decisions(campaign)
    items = (
        EvidenceItem.objects.filter(evidence_set=evidence_set)
        .select_related("task", "task__consensus")
        .order_by("task_id")
    )
    rows = []
    for item in items:
        row = consensus_row(item.task, decisions)
        row["manual"] = item.manual
        rows.append(row)
    return rows


# ---------------------------------------------------------------- end of researcher workspace section


# ---------------------------------------------------------------- sampled expert audit


def audit_items(campaign: Campaign) -> QuerySet[AuditItem]:
    return AuditItem.objects.filter(campaign=campaign)


def audit_next(campaign: Campaign) -> AuditItem | None:
    """The next drawn task no reviewer has answered yet, oldest draw first (None when all are answered)."""
    return audit_items(campaign).filter(audited_at__isnull=True).order_by("id").first()


def audit_progress(campaign: Campaign) -> dict[str, int]:
    """How many tasks the campaign's audit has drawn and how many of them have an answer, in one query."""
    return audit_items(campaign).aggregate(
        drawn=Count("id"), answered=Count("id", filter=Q(audited_at__isnull=False))
    )


def audit_report(campaign: Campaign) -> dict[str, Any]:
    """How often the crowd's settled label matched the experts' blind answer on the audited sample, with a 95%
    Wilson interval, next to the crowd's own mean confidence on the same tasks, and per crowd label."""
    items = list(audit_items(campaign).order_by("id"))
    answered = [i for i in items if i.audited_at is not None]
    judged = [i for i in answered if i.expert_label != UNSURE]
    agree = sum(i.expert_label == i.crowd_label for i in judged)
    low, high = wilson_interval(agree, len(judged))
    by_label: dict[str, dict[str, Any]] = {}
    for item in judged:
        row = by_label.setdefault(item.crowd_label, {"label": item.crowd_label, "n": 0, "agree": 0})
        row["n"] += 1
        row["agree"] += item.expert_label == item.crowd_label
    for row in by_label.values():
        row["accuracy"] = row["agree"] / row["n"]
        row["low"], row["high"] = wilson_interval(row["agree"], row["n"])
    return {
        "drawn": len(items),
        "answered": len(answered),
        "waiting": len(items) - len(answered),
        "unsure": len(answered) - len(judged),
        "judged": len(judged),
        "agree": agree,
        "accuracy": agree / len(judged) if judged else None,
        "low": low,
        "high": high,
        "mean_confidence": sum(i.crowd_confidence for i in judged) / len(judged) if judged else None,
        "by_label": sorted(by_label.values(), key=lambda r: r["label"]),
        "disagreements": [i for i in judged if i.expert_label != i.crowd_label],
    }
