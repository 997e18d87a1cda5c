"""Answers, consensus, volunteer reliability, adjudication, evidence sets, exports and the ledger."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from tasks.models import Campaign, Task, Volunteer


class ImmutableError(RuntimeError):
    """Raised when code tries to edit or delete a record that is append-only."""


class AppendOnlyModel(models.Model):
    """A row that is written once. Updates and deletes through the ORM are refused."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ImmutableError(f"{type(self).__name__} rows are append-only and cannot be edited")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ImmutableError(f"{type(self).__name__} rows are append-only and cannot be deleted")


class Answer(AppendOnlyModel):
    # Foreign keys marked db_index=False here and below lead a unique constraint or a composite index of
    # their model (here: the two unique constraints and answer_campaign_time), which serves every lookup a
    # single-column index would, without its cost on each write.
    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="answers", db_index=False)
    volunteer = models.ForeignKey(Volunteer, on_delete=models.PROTECT, related_name="answers", db_index=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="answers", db_index=False)
    answer = models.JSONField()
    label = models.CharField(max_length=200, help_text="The primary question's value, for aggregation")
    client_id = models.UUIDField()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "volunteer"], name="answer_once_per_volunteer"),
            models.UniqueConstraint(fields=["volunteer", "client_id"], name="answer_client_id_unique"),
        ]
        indexes = [
            models.Index(fields=["campaign", "created_at"], name="answer_campaign_time"),
            # A volunteer's answers today, and (from the index alone, on PostgreSQL) in one campaign: the
            # counts every next-task reads, without visiting each of a regular's thousands of answers.
            models.Index(
                fields=["volunteer", "created_at"], include=["campaign"], name="answer_volunteer_time"
            ),
        ]

    def __str__(self) -> str:
        return f"answer {self.pk} to task {self.task_id}"


class Consensus(models.Model):
    task = models.OneToOneField(Task, on_delete=models.CASCADE, related_name="consensus")
    label = models.CharField(max_length=200, blank=True)
    confidence = models.FloatField(default=0.0)
    agreement = models.FloatField(default=0.0)
    entropy = models.FloatField(default=0.0)
    n_answers = models.PositiveIntegerField(default=0)
    method = models.CharField(max_length=32, default="majority")
    distribution = models.JSONField(default=dict, blank=True)
    reason = models.CharField(max_length=300, blank=True, help_text="Why the task retired or went to review")
    reason_params = models.JSONField(
        default=dict,
        blank=True,
        help_text="The reason's case and figures, to say it in the reader's language",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__gte=0) & Q(confidence__lte=1), name="consensus_confidence_range"
            ),
            models.CheckConstraint(
                condition=Q(agreement__gte=0) & Q(agreement__lte=1), name="consensus_agreement_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.confidence:.2f})"


class VolunteerReliability(models.Model):
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="reliabilities", db_index=False
    )
    volunteer = models.ForeignKey(Volunteer, on_delete=models.CASCADE, related_name="reliabilities")
    reliability = models.FloatField(default=0.7)
    # n_answers is the count the last refit's model used; answers_given counts every answer the volunteer
    # gave in the campaign, exactly, in the answer's own transaction (the gold ramp and the progress line
    # read it on every next-task instead of counting a regular's thousands of answers).
    n_answers = models.PositiveIntegerField(default=0)
    answers_given = models.PositiveIntegerField(default=0)
    n_gold = models.PositiveIntegerField(default=0)
    n_gold_correct = models.PositiveIntegerField(default=0)
    flagged = models.BooleanField(default=False)
    blocked = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "volunteer"], name="reliability_unique"),
            models.CheckConstraint(
                condition=Q(reliability__gte=0) & Q(reliability__lte=1), name="reliability_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.volunteer} in {self.campaign}: {self.reliability:.2f}"


class Decision(AppendOnlyModel):
    """A reviewer's adjudication of a task. A later decision supersedes an earlier one; none is edited."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="decisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    label = models.CharField(max_length=200)
    note = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=~Q(note=""), name="decision_note_required")]

    def __str__(self) -> str:
        return f"decision {self.label} on task {self.task_id}"


class AuditItem(models.Model):
    """One task of a campaign's sampled expert audit: drawn at random from the tasks the crowd settled, then
    answered by a reviewer who is not shown the crowd's label, so the crowd's accuracy can be measured."""

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="audit_items")
    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="+", db_index=False)
    crowd_label = models.CharField(max_length=200, help_text="The consensus label when the task was drawn")
    crowd_confidence = models.FloatField()
    drawn_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    drawn_at = models.DateTimeField(auto_now_add=True)
    expert_label = models.CharField(max_length=200, blank=True)
    note = models.TextField(blank=True)
    audited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    audited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["task"], name="audit_task_once"),
            models.CheckConstraint(
                condition=(Q(expert_label="") & Q(audited_at__isnull=True))
                | (~Q(expert_label="") & Q(audited_at__isnull=False)),
                name="audit_answered_with_time",
            ),
        ]

    def __str__(self) -> str:
        return f"audit of task {self.task_id}"


class EvidenceSet(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="evidence_sets")
    name = models.CharField(max_length=120)
    version = models.PositiveIntegerField(default=1)
    description = models.TextField(blank=True)
    filters = models.JSONField(default=dict, blank=True)
    derived_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    frozen_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    tasks = models.ManyToManyField(Task, through="EvidenceItem", related_name="evidence_sets")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "name", "version"], name="evidence_set_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class EvidenceItem(models.Model):
    evidence_set = models.ForeignKey(
        EvidenceSet, on_delete=models.CASCADE, related_name="items", db_index=False
    )
    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="+")
    manual = models.BooleanField(default=False)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["evidence_set", "task"], name="evidence_item_unique")]

    def __str__(self) -> str:
        return f"task {self.task_id} in {self.evidence_set_id}"


class Export(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        COMPLETE = "complete", _("Complete")
        FAILED = "failed", _("Failed")

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="exports")
    evidence_set = models.ForeignKey(
        EvidenceSet, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    path = models.CharField(max_length=500, blank=True)
    files = models.PositiveIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    ledger_head_hash = models.CharField(max_length=64, blank=True)
    s3_uri = models.CharField(max_length=500, blank=True)
    uploaded = models.BooleanField(default=False)
    message = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"export {self.pk} of {self.campaign_id} ({self.status})"


class LedgerHead(models.Model):
    """The head of a campaign's hash chain; its row is locked while appending, so appends form one chain."""

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, related_name="ledger_head")
    seq = models.BigIntegerField(default=-1)
    head_hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"ledger head {self.seq} of {self.campaign_id}"


class LedgerPending(models.Model):
    """A ledger record committed with the change it records, waiting to be chained (PostgreSQL only).

    `corroborate_ledger_chain_pending` (migration 0006) chains it right after the commit: it locks the
    campaign's head, inserts the LedgerEntry with its hash computed from `canonical`, moves the head and
    deletes this row. A record committed while another request was chaining waits for the next chainer:
    the next commit in the campaign, any read of the ledger, or the every-minute "ledger-chain" job.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    canonical = models.TextField(help_text="ledger.canonical(record), the exact text the entry hash covers")
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"pending ledger record {self.pk} of {self.campaign_id}"


class LedgerEntry(AppendOnlyModel):
    campaign = models.ForeignKey(
        Campaign, on_delete=models.PROTECT, related_name="ledger_entries", db_index=False
    )
    seq = models.BigIntegerField()
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64)
    record = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["campaign", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "seq"], name="ledger_seq_unique"),
            models.UniqueConstraint(fields=["campaign", "prev_hash"], name="ledger_prev_unique"),
            models.CheckConstraint(condition=Q(seq__gte=0), name="ledger_seq_nonneg"),
        ]

    def __str__(self) -> str:
        return f"ledger {self.campaign_id}#{self.seq}"

    def as_line(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "prev_hash": self.prev_hash,
            "entry_hash": self.entry_hash,
            "record": self.record,
        }
