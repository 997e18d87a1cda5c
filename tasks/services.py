"""Writes for campaigns, sources and tasks: create, store originals, ingest media into tasks, lease tasks."""

from __future__ import annotations

import logging
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from django.contrib.auth.models import User
from django.core.files import File
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import slugify

from config import fastsql
from tasks import selectors
from tasks.models import Assignment, Campaign, CampaignMembership, Job, Source, Task, Volunteer
from tasks.questions import IMAGERY_QUESTION_SET, VIDEO_QUESTION_SET, validate_question_set
from tasks.storage import HashingReader, delete_quietly, put_bytes, put_file, scratch_dir, scratch_named
from verification.services import ledger_append

logger = logging.getLogger("corroborate.tasks")

ProgressCallback = Callable[[float, str], None]


class IngestError(ValueError):
    """Bad input for an ingest: the message is shown to the user as it is."""


# ---------------------------------------------------------------- campaigns


@transaction.atomic
def campaign_create(
    *,
    slug: str,
    title: str,
    kind: str,
    question_set: dict[str, Any] | None = None,
    description: str = "",
    created_by: User | None = None,
    status: str = Campaign.Status.LIVE,
    **settings: Any,
) -> Campaign:
    if slug != slugify(slug) or not slug:
        raise IngestError(f"campaign slug {slug!r} must be lowercase letters, digits and hyphens")
    if kind not in Campaign.Kind.values:
        raise IngestError(f"campaign kind must be one of {', '.join(Campaign.Kind.values)}")
    if question_set is None:
        question_set = IMAGERY_QUESTION_SET if kind == Campaign.Kind.IMAGERY else VIDEO_QUESTION_SET
    validate_question_set(question_set)
    campaign = Campaign(
        slug=slug,
        title=title,
        kind=kind,
        question_set=question_set,
        description=description,
        created_by=created_by if created_by is not None and created_by.pk else None,
        status=status,
        **settings,
    )
    campaign.full_clean()
    campaign.save()
    if created_by is not None and created_by.pk:
        CampaignMembership.objects.create(
            campaign=campaign, user=created_by, role=CampaignMembership.Role.OWNER
        )
    ledger_append(
        campaign=campaign,
        record={
            "type": "campaign_created",
            "campaign": slug,
            "kind": kind,
            "question_set": question_set,
            "settings": {
                "min_answers": campaign.min_answers,
                "max_answers": campaign.max_answers,
                "retirement_confidence": campaign.retirement_confidence,
                "gold_share": campaign.gold_share,
                "aggregation_method": campaign.aggregation_method,
            },
        },
    )
    return campaign


def campaign_get_or_create(*, slug: str, kind: str, created_by: User | None = None) -> Campaign:
    existing = Campaign.objects.filter(slug=slug).first()
    if existing is not None:
        if existing.kind != kind:
            raise IngestError(f"campaign {slug!r} is a {existing.kind} campaign, not {kind}")
        return existing
    title = slug.replace("-", " ").capitalize()
    return campaign_create(slug=slug, title=title, kind=kind, created_by=created_by)


@transaction.atomic
def membership_set(*, campaign: Campaign, user: User, role: str) -> CampaignMembership:
    membership, _ = CampaignMembership.objects.update_or_create(
        campaign=campaign, user=user, defaults={"role": role}
    )
    return membership


# ---------------------------------------------------------------- sources


# ---------------------------------------------------------------- tasks


@dataclass
class TaskDraft:
    key: str
    kind: str
    source: Source
    after_source: Source | None = None
    grid_row: int | None = None
    grid_col: int | None = None
    window: dict[str, Any] | None = None
    bbox: list[float] | None = None
    footprint: dict[str, Any] | None = None
    start_seconds: float | None = None
    end_seconds: float | None = None
    media: dict[str, Any] | None = None
    flags: dict[str, Any] | None = None


def tasks_create_batch(*, campaign: Campaign, drafts: Iterable[TaskDraft]) -> int:
    """Create tasks idempotently: a draft whose key already exists in the campaign is left alone."""
    objects = [
        Task(
            campaign=campaign,
            source=d.source,
            after_source=d.after_source,
            key=d.key,
            kind=d.kind,
            grid_row=d.grid_row,
            grid_col=d.grid_col,
            window=d.window,
            bbox=d.bbox,
            footprint=d.footprint,
            start_seconds=d.start_seconds,
            end_seconds=d.end_seconds,
            media=d.media or {},
            flags=d.flags or {},
        )
        for d in drafts
    ]
    if not objects:
        return 0
    keys = [o.key for o in objects]
    existing = set(Task.objects.filter(campaign=campaign, key__in=keys).values_list("key", flat=True))
    fresh = [o for o in objects if o.key not in existing]
    Task.objects.bulk_create(fresh, batch_size=500, ignore_conflicts=True)
    return len(fresh)


@transaction.atomic
def task_mark_gold(*, task: Task, answer: dict[str, Any], explanation: str, by: User) -> Task:
    from tasks.questions import validate_answer

    task.gold_answer = validate_answer(task.campaign.question_set, answer)
    task.gold_explanation = explanation
    task.is_gold = True
    task.save(update_fields=["gold_answer", "gold_explanation", "is_gold"])
    ledger_append(
        campaign=task.campaign,
        record={"type": "gold_set", "task": task.pk, "answer": task.gold_answer, "by": by.get_username()},
    )
    return task


# ---------------------------------------------------------------- volunteers


def volunteer_for_request(request: HttpRequest, *, create: bool) -> Volunteer | None:
    """The volunteer behind a request: the registered user's, or the anonymous one in the session."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        volunteer = Volunteer.objects.filter(user=user).first()
        if volunteer is None and create:
            session_volunteer = _session_volunteer(request)
            if session_volunteer is not None and session_volunteer.user_id is None:
                volunteer = volunteer_register(volunteer=session_volunteer, user=user)
            else:
                volunteer, _ = Volunteer.objects.get_or_create(user=user, defaults={"is_anonymous": False})
        return volunteer
    volunteer = _session_volunteer(request)
    if volunteer is None and create:
        # A newcomer's row commits without waiting for the disk (so does their session, config/sessions.py):
        # lost in a crash, it takes nothing with it, since their first answer's commit flushes it first.
        volunteer = fastsql.insert_instance(
            Volunteer(is_anonymous=True, created_at=timezone.now()), durable=False
        )
        request.session["volunteer"] = str(volunteer.public_id)
    return volunteer


def _session_volunteer(request: HttpRequest) -> Volunteer | None:
    public_id = request.session.get("volunteer") if hasattr(request, "session") else None
    if not public_id:
        return None
    try:
        return selectors.volunteer_by_public_id(uuid.UUID(str(public_id)))
    except ValueError:
        return None


@transaction.atomic
def volunteer_register(*, volunteer: Volunteer, user: User) -> Volunteer:
    """Attach an anonymous volunteer's history to a new account."""
    if Volunteer.objects.filter(user=user).exclude(pk=volunteer.pk).exists():
        return Volunteer.objects.get(user=user)
    volunteer.user = user  # type: ignore[assignment]
    volunteer.is_anonymous = False
    volunteer.save(update_fields=["user", "is_anonymous"])
    return volunteer


@transaction.atomic
def volunteer_tutorial_done(*, volunteer: Volunteer, campaign: Campaign) -> Volunteer:
    """Record that the volunteer went through the campaign's tutorial (once per campaign)."""
    volunteer = Volunteer.objects.select_for_update().get(pk=volunteer.pk)
    if campaign.slug not in (volunteer.tutorial_done or []):
        volunteer.tutorial_done = [*(volunteer.tutorial_done or []), campaign.slug]
        volunteer.save(update_fields=["tutorial_done"])
    return volunteer


def volunteer_set_graphic_opt_in(*, volunteer: Volunteer, opt_in: bool) -> Volunteer:
    """Whether graphic footage is shown unblurred (a warning is still shown); off unless chosen."""
    Volunteer.objects.filter(pk=volunteer.pk).update(graphic_opt_in=opt_in)
    volunteer.graphic_opt_in = opt_in
    return volunteer


# ---------------------------------------------------------------- leasing


GOLD_RAMP = ((20, 0.4), (40, 0.3), (60, 0.2))
CANDIDATE_TRIES = 5


class LeaseError(ValueError):
    """A lease that cannot be renewed or a task that cannot be skipped: the message is shown as it is."""


@dataclass
class LeaseResult:
    assignment: Assignment
    stats: dict[str, int]


def gold_share_for(*, campaign: Campaign, answered: int) -> float:
    """Zooniverse-style training ramp: more gold for newcomers, tapering to the campaign's share.

    40% of a newcomer's first 20 tasks, then 30%, 20%, and the campaign's own share from the 60th on.
    """
    for below, share in GOLD_RAMP:
        if answered < below:
            return max(share, campaign.gold_share) if campaign.gold_share > 0 else 0.0
    return campaign.gold_share


def task_lease_next(*, campaign: Campaign, volunteer: Volunteer, now: Any = None) -> Assignment | None:
    """Lease the next task for a volunteer, or None when nothing is left for them."""
    result = task_lease_next_with_stats(campaign=campaign, volunteer=volunteer, now=now)
    return result.assignment if result is not None else None


def task_lease_next_with_stats(
    *, campaign: Campaign, volunteer: Volunteer, now: Any = None
) -> LeaseResult | None:
    """Lease the next task, returning the volunteer's answer counts read on the way (for the progress line).

    Concurrency: on PostgreSQL the candidate task row is locked with FOR UPDATE SKIP LOCKED and its open
    leases are counted again under that lock (a statement snapshot taken before another volunteer's lease
    committed would otherwise miss it), so a task is never leased to more volunteers than it still needs
    answers. On SQLite the IMMEDIATE transaction serialises writers, so the same re-count is exact.
    """
    if volunteer.is_blocked or campaign.status != Campaign.Status.LIVE:
        return None  # a blocked volunteer is not told; a campaign that is not live serves nothing
    now = now or timezone.now()
    integrity_failures = 0
    for attempt in range(LEASE_ATTEMPTS):
        try:
            # A lease is not worth waiting for the disk: one lost in a crash only means the task is offered
            # again. Its commit returns before its WAL is flushed, so the candidate row lock, which the task's
            # answers queue behind, is released that much sooner. Answers stay synchronous (an acknowledged
            # answer is never lost), hence only when the lease is its own transaction: inside a caller's,
            # the setting would reach that caller's writes too.
            asynchronous_commit = not connection.in_atomic_block
            with transaction.atomic():
                result = _lease_once(
                    campaign=campaign, volunteer=volunteer, now=now, asynchronous_commit=asynchronous_commit
                )
        except IntegrityError:
            # Two requests of the same volunteer raced for one task; the unique constraint refused one.
            integrity_failures += 1
            if integrity_failures == 3:
                raise
            continue
        if result is not None or not _candidates_only_locked(campaign=campaign, volunteer=volunteer, now=now):
            return result
        # SKIP LOCKED passed over rows other volunteers held for a moment; a slot may still be free for this
        # volunteer once they commit, so "nothing left" would be wrong. Wait a little and look again.
        time.sleep(0.01 * (attempt + 1))
    return None


LEASE_ATTEMPTS = 6


def _candidates_only_locked(*, campaign: Campaign, volunteer: Volunteer, now: Any) -> bool:
    """Whether a candidate with a free slot exists when row locks are ignored (PostgreSQL only)."""
    if not connection.features.has_select_for_update_skip_locked:
        return False
    return any(
        selectors.task_candidate_next(
            campaign=campaign, volunteer=volunteer, now=now, gold=gold, exclude=[], lock=False
        )
        is not None
        for gold in (False, True)
    )


def _lease_once(
    *, campaign: Campaign, volunteer: Volunteer, now: Any, asynchronous_commit: bool = False
) -> LeaseResult | None:
    expires_at = now + timedelta(seconds=campaign.lease_seconds)
    stats, current_id = selectors.volunteer_lease_state(
        campaign=campaign, volunteer=volunteer, now=now, asynchronous_commit=asynchronous_commit
    )
    if current_id is not None:
        current = Assignment.objects.get(pk=current_id)
        current.expires_at = expires_at
        current.save(update_fields=["expires_at"])
        current.task = Task.objects.select_related("source", "after_source").get(pk=current.task_id)
        return LeaseResult(current, stats)
    share = gold_share_for(campaign=campaign, answered=stats["answered"])
    rng = random.Random(f"{volunteer.public_id}:{campaign.pk}:{stats['answered']}")
    order = [True, False] if rng.random() < share else [False, True]
    skip_locked = connection.features.has_select_for_update_skip_locked
    for gold in order:
        full: list[int] = []
        for _ in range(CANDIDATE_TRIES):
            task_id = selectors.task_candidate_next(
                campaign=campaign, volunteer=volunteer, now=now, gold=gold, exclude=full, lock=skip_locked
            )
            if task_id is None:
                break
            # Locked above (PostgreSQL), so this read is what the slot count and the lease are based on.
            task, leases = selectors.task_for_lease(task_id=task_id, volunteer=volunteer, now=now)
            slots = selectors.slots_left(task=task, campaign=campaign, open_leases=leases.count)
            if slots <= 0:
                full.append(task.pk)
                continue
            task.campaign = campaign
            if slots == 1 and not task.is_gold:
                # This lease takes the last slot: until the first lease expires (or an answer or a skip frees a
                # slot, which clears it), the next-task walk need not count this task's leases again.
                until = min(expires_at, leases.first_expiry) if leases.first_expiry else expires_at
                fastsql.update(Task, task.pk, {"leases_full_until": until})
            return LeaseResult(
                _lease_write(task=task, volunteer=volunteer, now=now, expires_at=expires_at), stats
            )
    return None


def _lease_write(*, task: Task, volunteer: Volunteer, now: Any, expires_at: Any) -> Assignment:
    # One upsert: an earlier, expired lease of this volunteer on this task is taken up again. It cannot
    # overwrite an answer or a skip: candidates exclude those, and the task's row lock (PostgreSQL) or the
    # IMMEDIATE transaction (SQLite) keeps an answer to this task from landing in between.
    return fastsql.insert_instance(
        Assignment(
            task=task,
            volunteer=volunteer,
            campaign=task.campaign,
            state=Assignment.State.LEASED,
            leased_at=now,
            expires_at=expires_at,
        ),
        conflict=("task", "volunteer"),
        update=("state", "leased_at", "expires_at"),
    )


@transaction.atomic
def lease_renew(*, task: Task, volunteer: Volunteer, now: Any = None) -> Assignment:
    """Extend the volunteer's lease on a task while they work on it.

    An expired lease is renewed only if the task could still be leased to them (open, with a free slot),
    so that a volunteer who comes back from a long pause does not push the task over its answers.
    """
    now = now or timezone.now()
    campaign = task.campaign
    if connection.features.has_select_for_update:
        task = Task.objects.select_for_update(of=("self",)).select_related("campaign").get(pk=task.pk)
    assignment = Assignment.objects.filter(task=task, volunteer=volunteer).first()
    if assignment is None or assignment.state != Assignment.State.LEASED:
        raise LeaseError("you do not hold a lease on this task")
    if assignment.expires_at <= now and (
        task.status != Task.Status.OPEN
        or selectors.task_slots_left(task=task, campaign=campaign, volunteer=volunteer, now=now) <= 0
    ):
        raise LeaseError("your lease on this task has expired and the task is no longer available")
    assignment.expires_at = now + timedelta(seconds=campaign.lease_seconds)
    assignment.save(update_fields=["expires_at"])
    return assignment


@transaction.atomic
def task_skip(*, task: Task, volunteer: Volunteer) -> Assignment:
    """The volunteer passes on a task: it is never served to them again and its slot is freed."""
    now = timezone.now()
    assignment = Assignment.objects.filter(task=task, volunteer=volunteer).first()
    if assignment is not None and assignment.state == Assignment.State.ANSWERED:
        raise LeaseError("you already answered this task")
    if assignment is None:
        return Assignment.objects.create(
            task=task,
            volunteer=volunteer,
            campaign_id=task.campaign_id,
            state=Assignment.State.SKIPPED,
            leased_at=now,
            expires_at=now,
        )
    assignment.state = Assignment.State.SKIPPED
    assignment.expires_at = now
    assignment.save(update_fields=["state", "expires_at"])
    # A lease given back frees a slot: the "all slots leased" hint no longer holds.
    Task.objects.filter(pk=task.pk, leases_full_until__isnull=False).update(leases_full_until=None)
    return assignment


# ---------------------------------------------------------------- jobs


def job_create(
    *,
    kind: str,
    params: dict[str, Any],
    campaign: Campaign | None = None,
    created_by: User | None = None,
) -> Job:
    """Record a job and queue it once the surrounding transaction commits."""
    job = Job.objects.create(
        kind=kind,
        params=params,
        campaign=campaign,
        created_by=created_by if created_by is not None and created_by.pk else None,
    )

    def enqueue() -> None:
        from django_q.tasks import async_task

        async_task("tasks.jobs.job_run", job.pk, task_name=f"{kind}-{job.pk}", group=kind)

    transaction.on_commit(enqueue)
    return job


def job_progress(job: Job, fraction: float, message: str = "") -> None:
    Job.objects.filter(pk=job.pk).update(
        progress=min(max(fraction, 0.0), 1.0),
        message=message[:500],
        status=Job.Status.RUNNING,
        updated_at=timezone.now(),
    )


def job_finish(job: Job, *, result: dict[str, Any] | None = None, error: str | None = None) -> None:
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.FAILED if error else Job.Status.DONE,
        progress=1.0 if not error else Job.objects.get(pk=job.pk).progress,
        message=(error or "done")[:500],
        result=result or {},
        updated_at=timezone.now(),
    )


# ---------------------------------------------------------------- ingest: shared


SOFTWARE = "corroborate 0.1.0"
TASK_BATCH = 50  # tasks are committed (and progress reported) in batches this size


def _sha256_and_size(path: str | Path) -> tuple[str, int]:
    from tasks.storage import sha256_path

    return sha256_path(path)


def _source_for_ingest(
    *,
    campaign: Campaign,
    path: str | Path,
    original_name: str,
    kind: str,
    role: str,
    metadata: dict[str, Any],
    uploaded_by: User | None,
) -> tuple[Source, bool]:
    """The Source for this original: an unfinished one with the same SHA-256 is resumed (crash re-run)."""
    sha256, _ = _sha256_and_size(path)
    existing = Source.objects.filter(campaign=campaign, sha256=sha256, role=role).order_by("id").first()
    if existing is not None:
        return existing, existing.ready
    with open(path, "rb") as stream:
        reader = HashingReader(stream)
        source = Source(
            campaign=campaign,
            kind=kind,
            role=role,
            original_name=Path(original_name).name[:255],
            metadata=metadata,
            sha256="0" * 64,
            size_bytes=0,
            uploaded_by=uploaded_by if uploaded_by is not None and uploaded_by.pk else None,
        )
        name = Path(original_name).name
        source.file.save(name, File(reader, name=name), save=False)  # type: ignore[arg-type]
        source.sha256 = reader.hexdigest()
        source.size_bytes = reader.size
    if source.sha256 != sha256:
        delete_quietly([source.file.name or ""])
        raise IngestError(f"{original_name} changed while it was being read; try again")
    source.save()
    return source, False


def _discard_source(source: Source, media_names: list[str]) -> None:
    """Undo an ingest that failed on bad input: its tasks, media and stored original go."""
    with transaction.atomic():
        Task.objects.filter(Q(source=source) | Q(after_source=source)).delete()
        name = source.file.name or ""
        source.delete()
    delete_quietly([*media_names, name])


def _ledger_source(source: Source) -> dict[str, Any]:
    return {
        "id": source.pk,
        "sha256": source.sha256,
        "size_bytes": source.size_bytes,
        "original_name": source.original_name,
        "kind": source.kind,
        "role": source.role,
    }


def _progress(progress: ProgressCallback | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


# ---------------------------------------------------------------- ingest: imagery


def imagery_validate(
    *,
    before: str | Path,
    after: str | Path | None = None,
    aoi: Any = None,
    tile_size_px: int = 256,
    overlap_px: int = 32,
) -> tuple[dict[str, Any], dict[str, Any] | None, Any]:
    """Check rasters, pair overlap, AOI and grid settings without writing anything (no pixels are read)."""
    from tasks import imagery

    try:
        before_meta = imagery.describe_raster(before)
        after_meta = imagery.describe_raster(after) if after else None
        plan = imagery.plan_grid(before, after, tile_size_px=tile_size_px, overlap_px=overlap_px, aoi=aoi)
    except imagery.ImageryError as exc:
        raise IngestError(str(exc)) from exc
    return before_meta, after_meta, plan


def source_ingest_imagery(
    *,
    campaign: Campaign,
    before: str | Path,
    after: str | Path | None = None,
    before_name: str | None = None,
    after_name: str | None = None,
    aoi: Any = None,
    tile_size_px: int = 256,
    overlap_px: int = 32,
    uploaded_by: User | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Turn a GeoTIFF (or a before/after pair) into georeferenced tile tasks.

    Everything is validated before anything is written; a failure part-way removes what was written, and a
    crash part-way can be re-run (the same originals resume, task keys are unique, media is not rewritten).
    """
    from tasks import imagery

    started = timezone.now()
    if campaign.kind != Campaign.Kind.IMAGERY:
        raise IngestError(
            f"campaign {campaign.slug} is a {campaign.kind} campaign; imagery needs an imagery campaign"
        )
    before_name = before_name or Path(before).name
    after_name = after_name or (Path(after).name if after else None)
    before_meta, after_meta, plan = imagery_validate(
        before=before, after=after, aoi=aoi, tile_size_px=tile_size_px, overlap_px=overlap_px
    )
    _progress(progress, 0.02, "validated")
    before_source, before_done = _source_for_ingest(
        campaign=campaign,
        path=before,
        original_name=before_name,
        kind=Source.Kind.RASTER,
        role="before" if after else "image",
        metadata=before_meta,
        uploaded_by=uploaded_by,
    )
    after_source = None
    after_done = True
    if after:
        assert after_name is not None and after_meta is not None
        after_source, after_done = _source_for_ingest(
            campaign=campaign,
            path=after,
            original_name=after_name,
            kind=Source.Kind.RASTER,
            role="after",
            metadata=after_meta,
            uploaded_by=uploaded_by,
        )
    if before_done and after_done:
        return {
            "campaign": campaign.slug,
            "tasks_created": 0,
            "tiles_skipped": 0,
            "source_sha256": before_source.sha256,
            "after_sha256": after_source.sha256 if after_source else None,
            "already_ingested": True,
        }
    prefix = f"tiles/{campaign.pk}/{before_source.pk}" + (f"-{after_source.pk}" if after_source else "")
    media_names: list[str] = []
    skipped: dict[str, int] = {}
    cloudy = 0
    created = 0
    drafts: list[TaskDraft] = []
    total = max(len(plan.tiles), 1)
    try:
        overview = put_bytes(f"{prefix}/overview-before.jpg", imagery.render_overview(before, plan))
        media_names.append(overview)
        overview_after = None
        if after:
            overview_after = put_bytes(
                f"{prefix}/overview-after.jpg", imagery.render_overview(before, plan, after=after)
            )
            media_names.append(overview_after)
        for index, tile in enumerate(imagery.iter_rendered_tiles(before, after, plan)):
            if tile.skip_reason:
                skipped[tile.skip_reason] = skipped.get(tile.skip_reason, 0) + 1
                continue
            spec = tile.spec
            media: dict[str, Any] = {
                "before": put_bytes(f"{prefix}/{spec.row}_{spec.col}_before.jpg", tile.before_jpeg)
            }
            media_names.append(media["before"])
            if tile.after_jpeg is not None:
                media["after"] = put_bytes(f"{prefix}/{spec.row}_{spec.col}_after.jpg", tile.after_jpeg)
                media_names.append(media["after"])
            media["overview"] = overview
            if overview_after:
                media["overview_after"] = overview_after
            cloudy += int(tile.cloudy)
            drafts.append(
                TaskDraft(
                    key=f"tile:{before_source.sha256[:16]}:{after_source.sha256[:16] if after_source else '-'}:"
                    f"{tile_size_px}:{overlap_px}:{spec.row}:{spec.col}",
                    kind=Task.Kind.TILE,
                    source=before_source,
                    after_source=after_source,
                    grid_row=spec.row,
                    grid_col=spec.col,
                    window={
                        "col_off": spec.col_off,
                        "row_off": spec.row_off,
                        "width": spec.width,
                        "height": spec.height,
                        "grid_width": plan.width,
                        "grid_height": plan.height,
                    },
                    bbox=list(spec.bbox_4326),
                    footprint=spec.footprint_4326,
                    media=media,
                    flags={"cloudy": True, "valid_fraction": round(tile.valid_fraction, 3)}
                    if tile.cloudy
                    else {"valid_fraction": round(tile.valid_fraction, 3)},
                )
            )
            if len(drafts) >= TASK_BATCH:
                created += tasks_create_batch(campaign=campaign, drafts=drafts)
                drafts = []
                _progress(progress, 0.05 + 0.9 * (index + 1) / total, f"{index + 1} of {total} tiles")
        created += tasks_create_batch(campaign=campaign, drafts=drafts)
    except imagery.ImageryError as exc:
        _discard_source(before_source, media_names)
        if after_source is not None:
            _discard_source(after_source, [])
        raise IngestError(str(exc)) from exc
    # Any other failure (a crash, a killed worker) keeps what was written, so that a re-run resumes it.
    if plan.tiles_outside_aoi:
        skipped["outside_aoi"] = plan.tiles_outside_aoi
    summary = {
        "campaign": campaign.slug,
        "tasks_created": created,
        "tasks_total": Task.objects.filter(source=before_source, after_source=after_source).count(),
        "tiles_skipped": sum(skipped.values()),
        "skipped_reasons": skipped,
        "tiles_cloudy": cloudy,
        "source_sha256": before_source.sha256,
        "after_sha256": after_source.sha256 if after_source else None,
        "grid": {
            "crs": plan.crs,
            "width": plan.width,
            "height": plan.height,
            "rows": plan.grid_rows,
            "cols": plan.grid_cols,
            "tile_size_px": tile_size_px,
            "overlap_px": overlap_px,
        },
        "overlap_area_m2": plan.overlap_area_m2,
    }
    if summary["tasks_total"] == 0:
        summary["why_no_tasks"] = (
            "every tile had under 5% valid pixels (no data)"
            if skipped.get("empty")
            else "no tile in the area"
        )
    with transaction.atomic():
        sources = [s for s in (before_source, after_source) if s is not None]
        for source in sources:
            source.metadata = {
                **source.metadata,
                "grid": summary["grid"],
                "overlap_area_m2": plan.overlap_area_m2,
            }
            source.ready = True
            source.save(update_fields=["metadata", "ready"])
            ledger_append(
                campaign=campaign, record={"type": "source_ingested", "source": _ledger_source(source)}
            )
        ledger_append(
            campaign=campaign,
            record={
                "type": "tasks_derived",
                "sources": [s.pk for s in sources],
                "derivation": "imagery tiles",
                "params": {
                    "tile_size_px": tile_size_px,
                    "overlap_px": overlap_px,
                    "aoi": bool(aoi),
                    "stretch": "2-98 percentile per scene and date",
                    "jpeg_quality": 80,
                },
                "software": SOFTWARE,
                "tasks_created": created,
                "tiles_skipped": summary["tiles_skipped"],
                "skipped_reasons": skipped,
            },
        )
    summary["seconds"] = round((timezone.now() - started).total_seconds(), 2)
    _progress(progress, 1.0, f"{summary['tasks_total']} tasks")
    return summary


# ---------------------------------------------------------------- ingest: video


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= (1 << 63) else value


def _unsigned64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def video_validate(*, path: str | Path) -> dict[str, Any]:
    """Probe a video's container and streams, refusing what cannot become tasks; writes nothing."""
    from tasks import video

    try:
        return video.probe_video(path)
    except video.VideoError as exc:
        raise IngestError(str(exc)) from exc


def source_ingest_video(
    *,
    campaign: Campaign,
    path: str | Path,
    original_name: str | None = None,
    max_segment_seconds: float = 10.0,
    uploaded_by: User | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Turn a video into segment tasks: shots, three keyframes each, a browser-playable rendition, hashes."""
    from tasks import video
    from tasks.models import KeyframeHash

    started = timezone.now()
    if campaign.kind != Campaign.Kind.VIDEO:
        raise IngestError(
            f"campaign {campaign.slug} is a {campaign.kind} campaign; videos need a video campaign"
        )
    if not 1.0 <= max_segment_seconds <= 600:
        raise IngestError("--max-segment-seconds must be between 1 and 600")
    original_name = original_name or Path(path).name
    metadata = video_validate(path=path)
    _progress(progress, 0.02, "validated")
    source, done = _source_for_ingest(
        campaign=campaign,
        path=path,
        original_name=original_name,
        kind=Source.Kind.VIDEO,
        role="video",
        metadata=metadata,
        uploaded_by=uploaded_by,
    )
    if done:
        return {
            "campaign": campaign.slug,
            "tasks_created": 0,
            "duration_seconds": metadata["duration_seconds"],
            "cuts_seconds": source.metadata.get("cuts_seconds", []),
            "source_sha256": source.sha256,
            "already_ingested": True,
        }
    prefix = f"video/{campaign.pk}/{source.pk}"
    media_names: list[str] = []
    try:
        shots = video.detect_shots(
            path,
            max_segment_seconds=max_segment_seconds,
            progress=lambda f: _progress(progress, 0.05 + 0.4 * f, "detecting shots"),
        )
        with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
            rendition = video.render_browser_rendition(path, Path(tmp) / "clip.mp4")
            clip_name = put_file(f"{prefix}/clip{Path(rendition['path']).suffix}", rendition["path"])
        media_names.append(clip_name)
        _progress(progress, 0.6, "rendition ready")
        drafts: list[TaskDraft] = []
        hashes: list[tuple[str, float, int, int]] = []
        for index, (start, end) in enumerate(shots.segments):
            keyframes = video.extract_keyframes(path, start, end, count=3)
            items = []
            for kf in keyframes:
                name = put_bytes(f"{prefix}/kf_{kf.time_seconds:09.3f}.jpg", kf.jpeg)
                media_names.append(name)
                items.append(
                    {"name": name, "time": round(kf.time_seconds, 3), "width": kf.width, "height": kf.height}
                )
                if not kf.blank:
                    hashes.append(
                        (
                            f"seg:{source.sha256[:16]}:{start:.3f}",
                            kf.time_seconds,
                            int(kf.dhash, 16),
                            int(kf.phash, 16),
                        )
                    )
            drafts.append(
                TaskDraft(
                    key=f"seg:{source.sha256[:16]}:{start:.3f}",
                    kind=Task.Kind.SEGMENT,
                    source=source,
                    start_seconds=round(start, 3),
                    end_seconds=round(end, 3),
                    media={"clip": clip_name, "clip_mime": rendition["mime"], "keyframes": items},
                )
            )
            _progress(progress, 0.6 + 0.35 * (index + 1) / max(len(shots.segments), 1), "keyframes")
        created = tasks_create_batch(campaign=campaign, drafts=drafts)
    except video.VideoError as exc:
        _discard_source(source, media_names)
        raise IngestError(str(exc)) from exc
    tasks_by_key = dict(Task.objects.filter(source=source).values_list("key", "pk"))
    KeyframeHash.objects.bulk_create(
        [
            KeyframeHash(
                task_id=tasks_by_key[key],
                source=source,
                time_seconds=t,
                dhash=_signed64(d),
                phash=_signed64(p),
            )
            for key, t, d, p in hashes
            if key in tasks_by_key
        ],
        ignore_conflicts=True,
    )
    duplicates = video_find_duplicates(source=source)
    summary = {
        "campaign": campaign.slug,
        "tasks_created": created,
        "tasks_total": len(tasks_by_key),
        "duration_seconds": metadata["duration_seconds"],
        "cuts_seconds": [round(c, 3) for c in shots.cuts_seconds],
        "segments": len(shots.segments),
        "source_sha256": source.sha256,
        "near_duplicates": duplicates,
    }
    with transaction.atomic():
        source.metadata = {**metadata, "cuts_seconds": summary["cuts_seconds"], "near_duplicates": duplicates}
        source.ready = True
        source.save(update_fields=["metadata", "ready"])
        ledger_append(campaign=campaign, record={"type": "source_ingested", "source": _ledger_source(source)})
        ledger_append(
            campaign=campaign,
            record={
                "type": "tasks_derived",
                "sources": [source.pk],
                "derivation": "video segments",
                "params": {
                    "max_segment_seconds": max_segment_seconds,
                    "keyframes_per_segment": 3,
                    "rendition": {k: v for k, v in rendition.items() if k != "path"},
                },
                "software": SOFTWARE,
                "tasks_created": created,
                "cuts_seconds": summary["cuts_seconds"],
            },
        )
    summary["seconds"] = round((timezone.now() - started).total_seconds(), 2)
    _progress(progress, 1.0, f"{len(tasks_by_key)} tasks")
    return summary


def video_find_duplicates(*, source: Source, max_distance: int = 10) -> list[dict[str, Any]]:
    """Segments of this video whose keyframes match keyframes of videos ingested earlier."""
    from tasks import video
    from tasks.models import KeyframeHash

    mine = list(KeyframeHash.objects.filter(source=source).select_related("task").order_by("time_seconds"))
    others = list(
        KeyframeHash.objects.exclude(source=source)
        .filter(source__ready=True)
        .select_related("task", "source")
    )
    if not mine or not others:
        return []
    matches = video.find_near_duplicates(
        [(_unsigned64(h.dhash), _unsigned64(h.phash)) for h in mine],
        [(h, _unsigned64(h.dhash), _unsigned64(h.phash)) for h in others],
        max_distance=max_distance,
    )
    found: dict[tuple[int, int], dict[str, Any]] = {}
    for match in matches:
        query = mine[match.query_index]
        other = cast(KeyframeHash, match.match_key)
        key = (query.task_id, other.task_id)
        if key not in found:
            found[key] = {
                "task": query.task_id,
                "segment": [query.task.start_seconds, query.task.end_seconds],
                "matches_source": other.source.original_name,
                "matches_source_sha256": other.source.sha256,
                "matches_task": other.task_id,
                "matches_segment": [other.task.start_seconds, other.task.end_seconds],
                "distance": match.distance,
            }
    return sorted(found.values(), key=lambda m: (m["segment"][0], m["distance"]))


# ---------------------------------------------------------------- researcher workspace: settings, uploads


CAMPAIGN_SETTING_FIELDS = (
    "title",
    "description",
    "status",
    "question_set",
    "min_answers",
    "max_answers",
    "retirement_confidence",
    "gold_share",
    "lease_seconds",
)


@transaction.atomic
def campaign_update(*, campaign: Campaign, by: User, **fields: Any) -> Campaign:
    """Change a campaign's set-up; the question set is frozen once volunteers have answered."""
    from django.core.exceptions import ValidationError

    from verification.models import Answer

    unknown = set(fields) - set(CAMPAIGN_SETTING_FIELDS)
    if unknown:
        raise IngestError(f"unknown campaign settings: {', '.join(sorted(unknown))}")
    changed = {k: v for k, v in fields.items() if getattr(campaign, k) != v}
    if "question_set" in changed:
        validate_question_set(changed["question_set"])
        if Answer.objects.filter(campaign=campaign).exists():
            raise IngestError("the question set cannot change once volunteers have answered")
    if not changed:
        return campaign
    for key, value in changed.items():
        setattr(campaign, key, value)
    try:
        campaign.full_clean()
    except ValidationError as exc:
        raise IngestError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
    campaign.save(update_fields=list(changed))
    ledger_append(
        campaign=campaign,
        record={"type": "campaign_updated", "changes": changed, "by": by.get_username()},
    )
    return campaign


def upload_queue(
    *,
    campaign: Campaign,
    kind: str,
    files: dict[str, Any],
    params: dict[str, Any],
    created_by: User | None,
) -> Job:
    """Validate uploaded originals by content, store them under uploads/<uuid>/ and queue the ingest job.

    `files` maps a role (before, after, video) to a Django UploadedFile. Nothing is stored when validation
    fails: the IngestError message is one line a researcher can act on.
    """
    if kind not in ("ingest_imagery", "ingest_video"):
        raise IngestError(f"unknown upload kind {kind!r}")
    expected = Campaign.Kind.IMAGERY if kind == "ingest_imagery" else Campaign.Kind.VIDEO
    if campaign.kind != expected:
        raise IngestError(f"campaign {campaign.slug} is a {campaign.kind} campaign")
    import contextlib

    with contextlib.ExitStack() as stack:
        local: dict[str, Path] = {}
        for role, upload in files.items():
            local[role] = stack.enter_context(_uploaded_path(upload))
        if kind == "ingest_imagery":
            imagery_validate(
                before=local["before"],
                after=local.get("after"),
                aoi=params.get("aoi"),
                tile_size_px=int(params.get("tile_size_px", 256)),
                overlap_px=int(params.get("overlap_px", 32)),
            )
        else:
            seconds = float(params.get("max_segment_seconds", 10.0))
            if not 1.0 <= seconds <= 600:
                raise IngestError("the maximum segment length must be between 1 and 600 seconds")
            video_validate(path=local["video"])
        folder = f"uploads/{uuid.uuid4().hex}"
        stored: list[str] = []
        job_params = dict(params)
        try:
            for role, upload in files.items():
                name = Path(upload.name or role).name or role
                stored.append(put_file(f"{folder}/{name}", local[role]))
                job_params[role] = stored[-1]
                job_params[f"{role}_name"] = name
            with transaction.atomic():
                return job_create(kind=kind, params=job_params, campaign=campaign, created_by=created_by)
        except Exception:
            delete_quietly(stored)
            raise


def _uploaded_path(upload: Any) -> Any:
    """A local path for an uploaded file: Django's own temporary file, or a scratch copy of a small one."""
    import contextlib

    @contextlib.contextmanager
    def manager() -> Any:
        # Under the file's own name, which the checks' messages quote (not Django's tmpab12cd.upload.tif).
        with scratch_named(upload.name or "upload") as path:
            temporary = getattr(upload, "temporary_file_path", None)
            if temporary is not None:
                path.symlink_to(Path(temporary()).resolve())
            else:
                with open(path, "wb") as copy:
                    for chunk in upload.chunks():
                        copy.write(chunk)
            yield path

    return manager()


# ---------------------------------------------------------------- researcher workspace: gold, roles


@transaction.atomic
def gold_import_csv(*, campaign: Campaign, csv_text: str, by: User) -> int:
    """Mark tasks gold from CSV rows `task_id,label,explanation`; all rows are checked before any is written."""
    import csv
    import io

    from tasks.questions import AnswerError, answer_for_label, validate_answer

    reader = csv.reader(io.StringIO(csv_text.lstrip("\ufeff")))
    rows: list[tuple[Task, dict[str, Any], str]] = []
    for line_no, row in enumerate(reader, start=1):
        if not row or not any(cell.strip() for cell in row):
            continue
        if line_no == 1 and row[0].strip().lower() == "task_id":
            continue
        if len(row) < 2:
            raise IngestError(f"line {line_no}: expected task_id,label,explanation")
        task_id, label = row[0].strip(), row[1].strip()
        explanation = ",".join(row[2:]).strip()
        if not task_id.isdigit():
            raise IngestError(f"line {line_no}: task_id {task_id!r} is not a number")
        task = Task.objects.filter(campaign=campaign, pk=int(task_id)).select_related("campaign").first()
        if task is None:
            raise IngestError(f"line {line_no}: task {task_id} is not in campaign {campaign.slug}")
        try:
            answer = validate_answer(campaign.question_set, answer_for_label(campaign.question_set, label))
        except AnswerError as exc:
            raise IngestError(f"line {line_no}: {exc.message}") from exc
        rows.append((task, answer, explanation))
    if not rows:
        raise IngestError("the CSV has no rows (expected task_id,label,explanation)")
    for task, answer, explanation in rows:
        task_mark_gold(task=task, answer=answer, explanation=explanation, by=by)
    return len(rows)


@transaction.atomic
def membership_remove(*, campaign: Campaign, user: User, by: User) -> None:
    """Remove a member; the last owner stays, so a campaign is never left without one."""
    membership = CampaignMembership.objects.filter(campaign=campaign, user=user).first()
    if membership is None:
        return
    owners = CampaignMembership.objects.filter(campaign=campaign, role=CampaignMembership.Role.OWNER)
    if membership.role == CampaignMembership.Role.OWNER and owners.count() == 1:
        raise IngestError("a campaign needs at least one owner")
    membership.delete()
    ledger_append(
        campaign=campaign,
        record={"type": "member_removed", "user": user.get_username(), "by": by.get_username()},
    )


@transaction.atomic
def membership_change(*, campaign: Campaign, user: User, role: str, by: User) -> CampaignMembership:
    """Grant or change a role from the workspace, keeping at least one owner, with a ledger entry."""
    if role not in CampaignMembership.Role.values:
        raise IngestError(f"role must be one of {', '.join(CampaignMembership.Role.values)}")
    current = CampaignMembership.objects.filter(campaign=campaign, user=user).first()
    owners = CampaignMembership.objects.filter(campaign=campaign, role=CampaignMembership.Role.OWNER)
    if (
        current is not None
        and current.role == CampaignMembership.Role.OWNER
        and role != CampaignMembership.Role.OWNER
        and owners.count() == 1
    ):
        raise IngestError("a campaign needs at least one owner")
    membership = membership_set(campaign=campaign, user=user, role=role)
    ledger_append(
        campaign=campaign,
        record={"type": "member_role", "user": user.get_username(), "role": role, "by": by.get_username()},
    )
    return membership


# ---------------------------------------------------------------- staged campaigns


@transaction.atomic
def campaign_promote(
    *,
    source_campaign: Campaign,
    target_campaign: Campaign,
    rule: dict[str, Any],
    by: User | None = None,
) -> dict[str, Any]:
    """Copy the tasks of one stage whose consensus matches `rule` into a follow-up campaign (idempotent).

    `rule` uses the evidence-set filter keys (labels, min_confidence, statuses, aoi). Copies keep source,
    footprint and media, get the key "promoted:<task id>" and point back through promoted_from.
    """
    from verification.selectors import tasks_matching

    if source_campaign.pk == target_campaign.pk:
        raise IngestError("a campaign cannot promote tasks into itself")
    if source_campaign.kind != target_campaign.kind:
        raise IngestError("the follow-up campaign must be of the same kind")
    if target_campaign.parent_id not in (None, source_campaign.pk):
        raise IngestError(f"campaign {target_campaign.slug} is already a stage of another campaign")
    if not rule:
        raise IngestError("a promotion rule needs at least one condition")
    matching = list(tasks_matching(campaign=source_campaign, filters=rule))
    drafts = [
        TaskDraft(
            key=f"promoted:{task.pk}",
            kind=task.kind,
            source=task.source,
            after_source=task.after_source,
            grid_row=task.grid_row,
            grid_col=task.grid_col,
            window=task.window,
            bbox=task.bbox,
            footprint=task.footprint,
            start_seconds=task.start_seconds,
            end_seconds=task.end_seconds,
            media=task.media,
            flags=task.flags,
        )
        for task in matching
    ]
    created = tasks_create_batch(campaign=target_campaign, drafts=drafts)
    by_key = {f"promoted:{task.pk}": task.pk for task in matching}
    for task in Task.objects.filter(campaign=target_campaign, key__in=list(by_key), promoted_from=None):
        Task.objects.filter(pk=task.pk).update(promoted_from_id=by_key[task.key])
    if target_campaign.parent_id is None or target_campaign.promotion_rule != rule:
        target_campaign.parent = source_campaign
        target_campaign.promotion_rule = rule
        target_campaign.save(update_fields=["parent", "promotion_rule"])
    summary = {
        "source_campaign": source_campaign.slug,
        "target_campaign": target_campaign.slug,
        "matching": len(matching),
        "tasks_created": created,
    }
    ledger_append(
        campaign=target_campaign,
        record={
            "type": "tasks_promoted",
            **summary,
            "rule": rule,
            "source_tasks": [task.pk for task in matching],
            "by": by.get_username() if by is not None else None,
        },
    )
    return summary


# ---------------------------------------------------------------- end of researcher workspace section
