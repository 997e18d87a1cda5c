"""Django admin for campaigns, memberships, sources, tasks, volunteers, assignments, jobs and keyframe hashes."""

from django.contrib import admin

from tasks.models import Assignment, Campaign, CampaignMembership, Job, KeyframeHash, Source, Task, Volunteer


class MembershipInline(admin.TabularInline):
    model = CampaignMembership
    extra = 0


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("slug", "title", "kind", "status", "min_answers", "max_answers", "retirement_confidence")
    list_filter = ("kind", "status")
    search_fields = ("slug", "title")
    inlines = [MembershipInline]


@admin.register(CampaignMembership)
class CampaignMembershipAdmin(admin.ModelAdmin):
    list_display = ("campaign", "user", "role")
    list_filter = ("role",)


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = (
        "original_name",
        "campaign",
        "kind",
        "role",
        "sha256",
        "size_bytes",
        "ready",
        "created_at",
    )
    list_filter = ("kind", "ready")
    readonly_fields = ("sha256", "size_bytes", "file", "metadata", "original_name")


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("id", "campaign", "kind", "key", "status", "answer_count", "is_gold", "priority")
    list_filter = ("campaign", "kind", "status", "is_gold")
    search_fields = ("key",)
    raw_id_fields = ("source", "after_source", "promoted_from")


@admin.register(Volunteer)
class VolunteerAdmin(admin.ModelAdmin):
    list_display = ("public_id", "user", "is_anonymous", "is_blocked", "created_at")
    list_filter = ("is_anonymous", "is_blocked")
    search_fields = ("public_id",)


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("task", "volunteer", "state", "leased_at", "expires_at")
    list_filter = ("state",)
    raw_id_fields = ("task", "volunteer")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "campaign", "status", "progress", "message", "created_at")
    list_filter = ("kind", "status")


@admin.register(KeyframeHash)
class KeyframeHashAdmin(admin.ModelAdmin):
    list_display = ("task", "source", "time_seconds", "dhash", "phash")
    raw_id_fields = ("task", "source")
