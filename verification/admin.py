"""Django admin for answers, consensus, reliability, decisions, audits, evidence sets, exports and the ledger.

Answers, decisions and ledger entries are append-only: the admin shows them read-only.
"""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

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


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Answer)
class AnswerAdmin(ReadOnlyAdmin):
    list_display = ("id", "task", "volunteer", "label", "duration_ms", "created_at")
    list_filter = ("campaign",)


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ("id", "task", "reviewer", "label", "created_at")


@admin.register(AuditItem)
class AuditItemAdmin(ReadOnlyAdmin):
    """Audit answers are recorded in the ledger; the admin only shows them."""

    list_display = ("campaign", "task", "crowd_label", "expert_label", "audited_by", "audited_at")
    list_filter = ("campaign",)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("campaign", "seq", "entry_hash", "created_at")
    list_filter = ("campaign",)


@admin.register(LedgerHead)
class LedgerHeadAdmin(ReadOnlyAdmin):
    list_display = ("campaign", "seq", "head_hash")


@admin.register(LedgerPending)
class LedgerPendingAdmin(ReadOnlyAdmin):
    """Empty outside open transactions: a row here after a commit would mean the chaining trigger is missing."""

    list_display = ("id", "campaign", "created_at")


@admin.register(Consensus)
class ConsensusAdmin(admin.ModelAdmin):
    list_display = ("task", "label", "confidence", "agreement", "n_answers", "method")


@admin.register(VolunteerReliability)
class VolunteerReliabilityAdmin(admin.ModelAdmin):
    list_display = ("campaign", "volunteer", "reliability", "n_answers", "flagged", "blocked")
    list_filter = ("campaign", "flagged", "blocked")


class EvidenceItemInline(admin.TabularInline):
    model = EvidenceItem
    extra = 0
    raw_id_fields = ("task",)


@admin.register(EvidenceSet)
class EvidenceSetAdmin(admin.ModelAdmin):
    list_display = ("campaign", "name", "version", "frozen_at")
    inlines = [EvidenceItemInline]


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("campaign", "status", "path", "files", "bytes", "s3_uri", "created_at")


@admin.register(EvidenceItem)
class EvidenceItemAdmin(admin.ModelAdmin):
    list_display = ("evidence_set", "task", "manual", "added_at")
    raw_id_fields = ("task",)
