"""Campaigns, sources, micro-tasks, volunteers, leases and background jobs."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from tasks.questions import QuestionSetError, validate_question_set


def _validate_question_set_field(value: Any) -> None:
    try:
        validate_question_set(value)
    except QuestionSetError as exc:
        raise ValidationError(str(exc)) from exc


def _new_salt() -> str:
    # Salts the volunteer commitments written to the ledger, so exported ledgers cannot be linked.
    return uuid.uuid4().hex


class Campaign(models.Model):
    class Kind(models.TextChoices):
        IMAGERY = "imagery", _("Imagery")
        VIDEO = "video", _("Video")

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        LIVE = "live", _("Live")
        PAUSED = "paused", _("Paused")
        FINISHED = "finished", _("Finished")

    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    tutorial = models.JSONField(default=list, blank=True, help_text="Tutorial steps: [{title, text, image}]")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    question_set = models.JSONField(validators=[_validate_question_set_field])
    min_answers = models.PositiveSmallIntegerField(default=3)
    max_answers = models.PositiveSmallIntegerField(default=10)
    retirement_confidence = models.FloatField(default=0.95)
    gold_share = models.FloatField(default=0.1, help_text="Share of gold tasks for experienced volunteers")
    aggregation_method = models.CharField(max_length=32, default="auto")
    aggregation_state = models.JSONField(
        default=dict, blank=True, help_text="Class prior and temperature from the last full refit"
    )
    lease_seconds = models.PositiveIntegerField(default=600)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="stages",
        help_text="Earlier stage whose tasks are promoted into this campaign",
    )
    promotion_rule = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    ledger_salt = models.CharField(max_length=64, default=_new_salt, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(min_answers__gte=1), name="campaign_min_answers_positive"),
            models.CheckConstraint(
                condition=Q(max_answers__gte=models.F("min_answers")), name="campaign_max_ge_min"
            ),
            models.CheckConstraint(
                condition=Q(retirement_confidence__gt=0.5) & Q(retirement_confidence__lte=1),
                name="campaign_retirement_confidence_range",
            ),
            models.CheckConstraint(
                condition=Q(gold_share__gte=0) & Q(gold_share__lte=1), name="campaign_gold_share_range"
            ),
            models.CheckConstraint(condition=Q(lease_seconds__gte=30), name="campaign_lease_min"),
        ]

    def __str__(self) -> str:
        return self.slug


class CampaignMembership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", _("Owner")
        REVIEWER = "reviewer", _("Reviewer")
        VIEWER = "viewer", _("Viewer")

    # Foreign keys marked db_index=False here and below lead a unique constraint or a composite index of
    # their model, which serves every lookup a single-column index would, without its cost on each write.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.campaign}"


def source_upload_path(instance: Source, filename: str) -> str:
    return f"sources/{instance.campaign_id}/{uuid.uuid4().hex}/{filename}"


class Source(models.Model):
    class Kind(models.TextChoices):
        RASTER = "raster", _("GeoTIFF")
        VIDEO = "video", _("Video")

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="sources")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    file = models.FileField(upload_to=source_upload_path, max_length=500)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    metadata = models.JSONField(default=dict, blank=True)
    role = models.CharField(max_length=16, default="before", help_text="before, after or video")
    ready = models.BooleanField(default=False, help_text="True once every task of this source is created")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(sha256__regex=r"^[0-9a-f]{64}$"), name="source_sha256_hex"),
            models.CheckConstraint(condition=Q(size_bytes__gte=0), name="source_size_nonneg"),
        ]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.sha256[:12]})"


class Task(models.Model):
    class Kind(models.TextChoices):
        TILE = "tile", _("Imagery tile")
        SEGMENT = "segment", _("Video segment")

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        RETIRED = "retired", _("Retired")
        NEEDS_REVIEW = "needs_review", _("Needs review")
        ADJUDICATED = "adjudicated", _("Adjudicated")

    # Led by task_key_unique and task_serving (see CampaignMembership.campaign).
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="tasks", db_index=False)
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="tasks")
    after_source = models.ForeignKey(
        Source, null=True, blank=True, on_delete=models.PROTECT, related_name="after_tasks"
    )
    key = models.CharField(
        max_length=128, help_text="Stable identity within the campaign (idempotent ingest)"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Imagery: grid position, pixel window on the common grid, bbox [w, s, e, n] and footprint in EPSG:4326.
    grid_row = models.IntegerField(null=True, blank=True)
    grid_col = models.IntegerField(null=True, blank=True)
    window = models.JSONField(null=True, blank=True)
    bbox = models.JSONField(null=True, blank=True)
    footprint = models.JSONField(null=True, blank=True)
    # Video: the segment's time range in seconds.
    start_seconds = models.FloatField(null=True, blank=True)
    end_seconds = models.FloatField(null=True, blank=True)
    media = models.JSONField(default=dict, blank=True, help_text="Storage names of what volunteers see")
    flags = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    is_gold = models.BooleanField(default=False)
    gold_answer = models.JSONField(null=True, blank=True)
    gold_explanation = models.TextField(blank=True)
    priority = models.FloatField(default=0.0)
    answer_count = models.PositiveIntegerField(default=0)
    leases_full_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A hint: every open slot is leased until at least this time, so the next-task walk passes "
        "the task without counting its leases; cleared when an answer or a skip frees a slot",
    )
    promoted_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="promotions"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "key"], name="task_key_unique"),
            models.CheckConstraint(
                condition=Q(is_gold=False) | Q(gold_answer__isnull=False), name="task_gold_has_answer"
            ),
            models.CheckConstraint(
                condition=Q(start_seconds__isnull=True)
                | Q(end_seconds__isnull=True)
                | Q(end_seconds__gt=models.F("start_seconds")),
                name="task_time_range_ordered",
            ),
        ]
        indexes = [models.Index(fields=["campaign", "status", "is_gold", "-priority"], name="task_serving")]

    def __str__(self) -> str:
        return f"task {self.pk} ({self.key})"


class Volunteer(models.Model):
    """A pseudonymous participant. Holds no IP address and no email; `user` is set once registered."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="volunteer"
    )
    is_anonymous = models.BooleanField(default=True)
    graphic_opt_in = models.BooleanField(default=False)
    tutorial_done = models.JSONField(
        default=list, blank=True, help_text="Slugs of campaigns whose tutorial is done"
    )
    is_blocked = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"volunteer {str(self.public_id)[:8]}"

    @property
    def pseudonym(self) -> str:
        return f"V-{str(self.public_id)[:8]}"


class Assignment(models.Model):
    """A volunteer's lease on a task, and what became of it (answered or skipped)."""

    class State(models.TextChoices):
        LEASED = "leased", _("Leased")
        ANSWERED = "answered", _("Answered")
        SKIPPED = "skipped", _("Skipped")

    # Led by assignment_unique and assignment_by_volunteer (see CampaignMembership.campaign).
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    volunteer = models.ForeignKey(
        Volunteer, on_delete=models.CASCADE, related_name="assignments", db_index=False
    )
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.LEASED)
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "volunteer"], name="assignment_unique")]
        indexes = [
            models.Index(fields=["task", "state", "expires_at"], name="assignment_open_leases"),
            models.Index(fields=["volunteer", "campaign", "state"], name="assignment_by_volunteer"),
        ]

    def __str__(self) -> str:
        return f"{self.volunteer} {self.state} task {self.task_id}"


class Job(models.Model):
    """A background unit of work (ingest, aggregation, export) with progress that pages can poll."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    kind = models.CharField(max_length=32)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1), name="job_progress_range"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"


class KeyframeHash(models.Model):
    """Perceptual hashes of one keyframe, for near-duplicate search across every video in the platform."""

    # Led by keyframe_hash_unique (see CampaignMembership.campaign).
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="keyframe_hashes", db_index=False)
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="keyframe_hashes")
    time_seconds = models.FloatField()
    dhash = models.BigIntegerField(help_text="64-bit dHash, stored as a signed integer")
    phash = models.BigIntegerField(help_text="64-bit pHash, stored as a signed integer")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "time_seconds"], name="keyframe_hash_unique")]

    def __str__(self) -> str:
        return f"keyframe {self.time_seconds:.2f}s of task {self.task_id}"
