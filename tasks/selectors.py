"""Reads for campaigns and tasks: serving candidates, leases, progress."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet

from config import fastsql
from tasks.models import Assignment, Campaign, CampaignMembership, Source, Task, Volunteer


def campaign_by_slug(slug: str) -> Campaign | None:
    """The campaign with this slug (plain SQL: read on every next-task request)."""
    row = fastsql.fetch_one(
        f"SELECT {fastsql.columns(Campaign, 'c')} FROM {fastsql.table(Campaign)} c WHERE c.slug = %s", [slug]
    )
    return fastsql.load(Campaign, row)[0] if row else None


def volunteer_by_public_id(public_id: Any) -> Volunteer | None:
    """The volunteer with this pseudonymous id (plain SQL: read on every volunteer request)."""
    row = fastsql.fetch_one(
        f"SELECT {fastsql.columns(Volunteer, 'v')} FROM {fastsql.table(Volunteer)} v WHERE v.public_id = %s",
        [fastsql.prep(Volunteer, "public_id", public_id)],
    )
    return fastsql.load(Volunteer, row)[0] if row else None


def volunteer_lease_state(
    *, campaign: Campaign, volunteer: Volunteer, now: Any, asynchronous_commit: bool = False
) -> tuple[dict[str, int], int | None]:
    """In one statement: the volunteer's answers in this campaign and (in every campaign) since midnight
    UTC, and the id of their unexpired lease on a still-open task of this campaign (a reload gets it back).

    With `asynchronous_commit`, on PostgreSQL, the same statement also sets synchronous_commit off for
    the rest of the transaction (``set_config(..., true)`` is SET LOCAL), saving a round trip.
    """
    from verification.models import Answer, VolunteerReliability

    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    answers, assignments, tasks = fastsql.table(Answer), fastsql.table(Assignment), fastsql.table(Task)
    row = fastsql.fetch_one(
        # This campaign's count is kept with the volunteer's statistics, in each answer's own transaction:
        # one row, however many answers a regular gave (counting them took 2.3 ms per next-task for 20,000,
        # benchmarks/regular_volunteer.py). Today's is counted from the volunteer's own answers since
        # midnight (index answer_volunteer_time): at most a day's.
        f"SELECT COALESCE((SELECT r.answers_given FROM {fastsql.table(VolunteerReliability)} r"
        "   WHERE r.campaign_id = %s AND r.volunteer_id = %s), 0),"
        f" (SELECT COUNT(*) FROM {answers} a WHERE a.volunteer_id = %s AND a.created_at >= %s),"
        f" (SELECT l.id FROM {assignments} l JOIN {tasks} t ON t.id = l.task_id"
        "   WHERE l.campaign_id = %s AND l.volunteer_id = %s AND l.state = %s AND l.expires_at > %s"
        "   AND t.status = %s ORDER BY l.leased_at DESC LIMIT 1)"
        + (f", {fastsql.no_disk_wait()}" if asynchronous_commit and fastsql.no_disk_wait() else ""),
        [
            campaign.pk,
            volunteer.pk,
            volunteer.pk,
            connection.ops.adapt_datetimefield_value(midnight),
            campaign.pk,
            volunteer.pk,
            Assignment.State.LEASED.value,
            connection.ops.adapt_datetimefield_value(now),
            Task.Status.OPEN.value,
        ],
        custom_plan=True,
    )
    assert row is not None
    return {"answered": int(row[0]), "answered_today": int(row[1])}, row[2]


_SOURCE_FOR_PAYLOAD = ("id", "original_name", "sha256", "kind")


@dataclass
class OpenLeases:
    """Other volunteers' unexpired leases on a task: how many, and when the first of them expires."""

    count: int
    first_expiry: Any


def task_for_lease(*, task_id: int, volunteer: Volunteer, now: Any) -> tuple[Task, OpenLeases]:
    """The task with its sources (the fields a volunteer is shown) and the other volunteers' unexpired
    leases on it, in one statement read after the caller locked the task's row."""
    sources, assignments = fastsql.table(Source), fastsql.table(Assignment)
    others = f"FROM {assignments} o WHERE o.task_id = t.id AND o.state = %s AND o.expires_at > %s AND o.volunteer_id <> %s"
    adapted_now = connection.ops.adapt_datetimefield_value(now)
    row = fastsql.fetch_one(
        f"SELECT {fastsql.columns(Task, 't')}, {fastsql.columns(Source, 's', _SOURCE_FOR_PAYLOAD)},"
        f" {fastsql.columns(Source, 'a', _SOURCE_FOR_PAYLOAD)},"
        f" (SELECT COUNT(*) {others}), (SELECT MIN(o.expires_at) {others})"
        f" FROM {fastsql.table(Task)} t JOIN {sources} s ON s.id = t.source_id"
        f" LEFT JOIN {sources} a ON a.id = t.after_source_id WHERE t.id = %s",
        [Assignment.State.LEASED.value, adapted_now, volunteer.pk] * 2 + [task_id],
    )
    if row is None:
        raise Task.DoesNotExist(f"task {task_id} does not exist")
    task, at = fastsql.load(Task, row)
    task.source, at = fastsql.load(Source, row, at, _SOURCE_FOR_PAYLOAD)
    after, at = fastsql.load(Source, row, at, _SOURCE_FOR_PAYLOAD)
    task.after_source = after if after.pk is not None else None
    first_expiry = fastsql.convert(Assignment, "expires_at", row[at + 1]) if row[at + 1] is not None else None
    return task, OpenLeases(count=int(row[at]), first_expiry=first_expiry)


def slots_left(*, task: Task, campaign: Campaign, open_leases: int) -> int:
    """How many more volunteers may lease the task, given the other volunteers' unexpired leases on it."""
    if task.is_gold:
        return 1
    needed = min(max(campaign.min_answers - task.answer_count, 1), campaign.max_answers - task.answer_count)
    return needed - open_leases


def volunteer_answer_stats(*, campaign: Campaign, volunteer: Volunteer, now: Any) -> dict[str, int]:
    """The volunteer's answers in this campaign and (in every campaign) since midnight UTC."""
    return volunteer_lease_state(campaign=campaign, volunteer=volunteer, now=now)[0]


def task_candidate_next(
    *, campaign: Campaign, volunteer: Volunteer, now: Any, gold: bool, exclude: list[int], lock: bool
) -> int | None:
    """The id of the most informative open task this volunteer may take now, or None.

    Open tasks this volunteer has not answered or skipped, with a free slot, of a ready source. A task
    still needs max(min_answers - answers, 1) more answers (never more than max_answers in all);
    unexpired leases of other volunteers hold those slots, expired ones count for nothing. Gold tasks are
    shown to every volunteer once, in an order of each volunteer's own. `priority` (answers so far plus the
    consensus's uncertainty, kept by the consensus service) puts the tasks closest to retirement, then the
    most uncertain, first.
    This count is a pre-filter read before any lock: `task_slots_left` re-checks under the task's lock.

    With `lock` (PostgreSQL) the row is locked FOR UPDATE SKIP LOCKED, so concurrent volunteers are spread
    over different tasks instead of queueing on one. Plain SQL: this runs on every next-task request, and
    the ORM spent more CPU compiling it (Exists, a counted subquery, Greatest) than PostgreSQL took to run it.
    """
    from django.db import connection

    ops = connection.ops
    task_table = ops.quote_name(Task._meta.db_table)
    source_table = ops.quote_name(Source._meta.db_table)
    assignment_table = ops.quote_name(Assignment._meta.db_table)
    sql = (
        f"SELECT t.id FROM {task_table} t JOIN {source_table} s ON s.id = t.source_id"
        " WHERE t.campaign_id = %s AND t.status = %s AND t.is_gold = %s AND s.ready = %s"
        # The volunteer's own assignment to each task walked, looked up by the (task, volunteer) key in a
        # scalar subquery. Written as NOT EXISTS, PostgreSQL turned it into an anti-join that compared
        # every task walked with every task the volunteer had answered (hundreds for a regular): the
        # next-task cost grew with each volunteer's history.
        f" AND COALESCE((SELECT d.state FROM {assignment_table} d"
        " WHERE d.task_id = t.id AND d.volunteer_id = %s), %s) NOT IN (%s, %s)"
    )
    params: list[Any] = [
        campaign.pk,
        Task.Status.OPEN.value,
        gold,
        True,
        volunteer.pk,
        Assignment.State.LEASED.value,
        Assignment.State.ANSWERED.value,
        Assignment.State.SKIPPED.value,
    ]
    if not gold:
        greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
        # The hint first: a task whose slots are all leased is passed without counting its leases (volunteers
        # who leave a task open hold its slot until the lease expires, and every walk would count them).
        sql += " AND (t.leases_full_until IS NULL OR t.leases_full_until <= %s)"
        params.append(ops.adapt_datetimefield_value(now))
        sql += (
            f" AND t.answer_count < %s AND (SELECT COUNT(*) FROM {assignment_table} o"
            " WHERE o.task_id = t.id AND o.state = %s AND o.expires_at > %s AND o.volunteer_id <> %s)"
            f" < {greatest}(%s - t.answer_count, 1)"
        )
        params += [
            campaign.max_answers,
            Assignment.State.LEASED.value,
            ops.adapt_datetimefield_value(now),
            volunteer.pk,
            campaign.min_answers,
        ]
    if exclude:
        sql += f" AND t.id NOT IN ({', '.join(['%s'] * len(exclude))})"
        params += exclude
    if gold:
        # Gold tasks in an order of the volunteer's own (a permutation of task ids that differs from one
        # volunteer to the next). In one order for all, newcomers who arrived together answered the same
        # gold task at the same moment, and their answers queued on its row lock: under load, 41% of the
        # active PostgreSQL backends sampled were waiting for a task's row lock, almost all on gold tasks.
        # A campaign's gold tasks are few, so sorting them costs little (0.1 ms per walk for 200).
        # id -> (id * m + c) mod (2^31 - 1), a prime, is a permutation for every multiplier m; m and c come
        # from the volunteer's random public id. (Drawn from consecutive primary keys, they gave consecutive
        # newcomers the same first gold task.) The id is reduced first, so products stay under 2^62.
        sql += " ORDER BY ((t.id %% 2147483647) * %s + %s) %% 2147483647, t.id LIMIT 1"
        spread = volunteer.public_id.int
        params += [1 + spread % 2147483646, (spread >> 64) % 2147483647]
    else:
        # Ties keep the index order (the heap order of equal keys): ordering by priority alone lets
        # PostgreSQL walk the task_serving index and stop at the first free task instead of sorting them.
        sql += " ORDER BY t.priority DESC LIMIT 1"
    if lock:
        sql += " FOR UPDATE OF t SKIP LOCKED"
    row = fastsql.fetch_one(sql, params, custom_plan=True)
    return int(row[0]) if row else None


def task_slots_left(*, task: Task, campaign: Campaign, volunteer: Volunteer, now: Any) -> int:
    """How many more volunteers (besides this one) may lease the task now, read fresh.

    Call it while holding the task's row lock: every lease of a task is written under that lock, so the
    count cannot change until the caller commits. Gold tasks have no slot limit.
    """
    _, leases = task_for_lease(task_id=task.pk, volunteer=volunteer, now=now)
    return slots_left(task=task, campaign=campaign, open_leases=leases.count)


def campaign_percent_done(campaign: Campaign) -> int:
    """Share of the campaign's (non-gold) tasks that no longer need answers, cached for a short while.

    It is shown with every task, so it must not cost a COUNT over the campaign's tasks on each request.
    """
    from django.core.cache import cache

    # Kept in this process too: it is read with every task served, and a shared-cache round trip per
    # request cost more than the figure is worth; it is at most PERCENT_SECONDS old either way.
    now = time.monotonic()
    key = f"campaign-percent:{campaign.pk}"
    held = _percent_held.get(cache.make_key(key))
    if held is not None and held[0] > now:
        return held[1]
    percent = cache.get(key)
    if percent is None:
        counts = Task.objects.filter(campaign=campaign, is_gold=False, source__ready=True).aggregate(
            total=Count("id"), done=Count("id", filter=~Q(status=Task.Status.OPEN))
        )
        total = counts["total"] or 0
        percent = round(100 * (counts["done"] or 0) / total) if total else 0
        cache.set(key, percent, timeout=PERCENT_SECONDS)
    _percent_held[cache.make_key(key)] = (now + PERCENT_SECONDS / 2, int(percent))
    return int(percent)


PERCENT_SECONDS = 30
_percent_held: dict[str, tuple[float, int]] = {}  # by full cache key (prefix and version included)


def field_guide_examples(campaign: Campaign) -> dict[str, Task]:
    """One gold task per expected answer of the primary question, to illustrate the field guide."""
    primary = campaign.question_set.get("primary")
    examples: dict[str, Task] = {}
    for task in Task.objects.filter(campaign=campaign, is_gold=True).order_by("id")[:200]:
        label = (task.gold_answer or {}).get(primary)
        if isinstance(label, str) and label not in examples:
            examples[label] = task
    return examples


def tutorial_tasks(campaign: Campaign) -> dict[int, Task]:
    """The tasks that tutorial steps point at (a step may name a task whose media illustrate it)."""
    ids = [
        s["task"] for s in campaign.tutorial or [] if isinstance(s, dict) and isinstance(s.get("task"), int)
    ]
    return Task.objects.filter(campaign=campaign, pk__in=ids).in_bulk() if ids else {}


def campaigns_for_home() -> QuerySet[Campaign]:
    return campaigns_with_counts(Campaign.objects.filter(status=Campaign.Status.LIVE))


def campaigns_with_counts(queryset: QuerySet[Campaign]) -> QuerySet[Campaign]:
    return queryset.annotate(
        task_count=Count("tasks", filter=Q(tasks__is_gold=False, tasks__source__ready=True), distinct=True),
        retired_count=Count(
            "tasks",
            filter=Q(tasks__is_gold=False) & ~Q(tasks__status=Task.Status.OPEN),
            distinct=True,
        ),
    ).order_by("-created_at")


def gold_task_count(campaign: Campaign) -> int:
    """Gold tasks, which the task counts beside it leave out (they never retire; volunteers train on them)."""
    return Task.objects.filter(campaign=campaign, is_gold=True).count()


def campaign_answer_count(campaign: Campaign) -> int:
    from verification.models import Answer

    return Answer.objects.filter(campaign=campaign).count()


def campaigns_visible_to(user: Any) -> QuerySet[Campaign]:
    """Public listing: live campaigns; researchers also see every campaign they belong to."""
    queryset = Campaign.objects.filter(status=Campaign.Status.LIVE)
    if user is not None and user.is_authenticated:
        if user.is_superuser:
            return Campaign.objects.all()
        queryset = Campaign.objects.filter(
            Q(status=Campaign.Status.LIVE) | Q(memberships__user=user)
        ).distinct()
    return queryset


def role_of(*, user: Any, campaign: Campaign) -> str | None:
    """owner, reviewer, viewer, or None. Administrators act as owners everywhere."""
    if user is None or not user.is_authenticated:
        return None
    if user.is_superuser:
        return CampaignMembership.Role.OWNER
    membership = CampaignMembership.objects.filter(campaign=campaign, user=user).only("role").first()
    return membership.role if membership else None


def researcher_campaigns(user: Any) -> QuerySet[Campaign]:
    if user.is_superuser:
        return Campaign.objects.all()
    return Campaign.objects.filter(memberships__user=user)


def volunteer_progress(
    *, campaign: Campaign, volunteer: Volunteer | None, now: Any, stats: dict[str, int] | None = None
) -> dict[str, int]:
    """What the classify page shows: your answers here and today, and how far the campaign has come."""
    if volunteer is None:
        stats = {"answered": 0, "answered_today": 0}
    elif stats is None:
        stats = volunteer_answer_stats(campaign=campaign, volunteer=volunteer, now=now)
    return {**stats, "campaign_percent": campaign_percent_done(campaign)}


def segment_near_duplicates(task: Task) -> list[dict[str, Any]]:
    """Earlier videos in the platform whose keyframes match this segment (the local reverse image search)."""
    matches = (task.source.metadata or {}).get("near_duplicates", [])
    return [
        {
            "matches_source": m["matches_source"],
            "matches_task": m["matches_task"],
            "matches_segment": m["matches_segment"],
            "distance": m["distance"],
        }
        for m in matches
        if m.get("task") == task.pk
    ]


# ---------------------------------------------------------------- researcher workspace


ROLE_RANK: dict[str, int] = {
    CampaignMembership.Role.VIEWER: 1,
    CampaignMembership.Role.REVIEWER: 2,
    CampaignMembership.Role.OWNER: 3,
}


def role_allows(role: str | None, needed: str) -> bool:
    """Owners may do everything, reviewers review, viewers read."""
    return role is not None and ROLE_RANK.get(role, 0) >= ROLE_RANK[needed]


def role_flags(role: str | None) -> dict[str, bool]:
    """What a campaign role may do in the research workspace: review (reviewers, owners), own (owners)."""
    return {
        "can_review": role_allows(role, CampaignMembership.Role.REVIEWER),
        "is_owner": role_allows(role, CampaignMembership.Role.OWNER),
    }


def can_create_campaigns(user: Any) -> bool:
    """Administrators, users granted tasks.add_campaign, and owners of a campaign."""
    if user is None or not user.is_authenticated:
        return False
    return bool(
        user.is_superuser
        or user.has_perm("tasks.add_campaign")
        or CampaignMembership.objects.filter(user=user, role=CampaignMembership.Role.OWNER).exists()
    )


def is_researcher(user: Any) -> bool:
    if user is None or not user.is_authenticated:
        return False
    return bool(can_create_campaigns(user) or CampaignMembership.objects.filter(user=user).exists())


def campaign_members(campaign: Campaign) -> QuerySet[CampaignMembership]:
    return (
        CampaignMembership.objects.filter(campaign=campaign).select_related("user").order_by("user__username")
    )


def campaign_recent_jobs(campaign: Campaign, *, limit: int = 10) -> QuerySet[Any]:
    from tasks.models import Job

    return Job.objects.filter(campaign=campaign).order_by("-created_at", "-id")[:limit]


def campaigns_owned_by(user: Any) -> QuerySet[Campaign]:
    if user.is_superuser:
        return Campaign.objects.all()
    return Campaign.objects.filter(
        memberships__user=user, memberships__role=CampaignMembership.Role.OWNER
    ).distinct()


def campaign_sources(campaign: Campaign) -> QuerySet[Any]:
    from tasks.models import Source

    # A before source owns its tasks through `tasks`, an after source through `after_tasks`.
    return (
        Source.objects.filter(campaign=campaign)
        .annotate(n_before=Count("tasks", distinct=True), n_after=Count("after_tasks", distinct=True))
        .order_by("id")
    )


# ---------------------------------------------------------------- end of researcher workspace section


# What researchers are shown of an original's format metadata, in this order (missing keys are left out).
PROVENANCE_FIELDS = [
    ("sha256", "SHA-256 at ingest"),
    ("driver", "Format"),
    ("container", "Container"),
    ("crs", "CRS"),
    ("width", "Width (px)"),
    ("height", "Height (px)"),
    ("count", "Bands"),
    ("dtypes", "Data types"),
    ("res", "Pixel size"),
    ("bounds_4326", "Bounds (EPSG:4326)"),
    ("acquisition_date", "Acquisition date"),
    ("duration_seconds", "Duration (s)"),
    ("fps", "Frame rate"),
    ("variable_frame_rate", "Variable frame rate"),
    ("rotation", "Rotation (degrees)"),
    ("video_codec", "Video codec"),
    ("audio_codec", "Audio codec"),
    ("creation_time", "Creation time (container tag)"),
    ("encoder", "Encoder (a re-encode often shows here)"),
    ("location", "Location tag"),
    ("cuts_seconds", "Shot boundaries (s)"),
]


def source_provenance(source: Source) -> list[tuple[str, Any]]:
    """An original's custody facts for the researcher's task page: hash, name and format metadata."""
    metadata = {**(source.metadata or {}), "sha256": source.sha256}
    rows: list[tuple[str, Any]] = [("Original file", source.original_name)]
    for key, label in PROVENANCE_FIELDS:
        value = metadata.get(key)
        if value not in (None, "", [], {}):
            rows.append((label, ", ".join(str(v) for v in value) if isinstance(value, list) else value))
    return rows
