"""Reads for campaigns and tasks: serving candidates, leases, progress."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Greatest

from tasks.models import Assignment, Campaign, CampaignMembership, Task, Volunteer


def lease_current(*, campaign: Campaign, volunteer: Volunteer, now: Any) -> Assignment | None:
    """The volunteer's unexpired lease on a still-open task of this campaign, if any (a reload gets it back)."""
    return (
        Assignment.objects.select_related("task")
        .filter(
            campaign=campaign,
            volunteer=volunteer,
            state=Assignment.State.LEASED,
            expires_at__gt=now,
            task__status=Task.Status.OPEN,
        )
        .order_by("-leased_at")
        .first()
    )


def volunteer_answered_count(*, campaign: Campaign, volunteer: Volunteer) -> int:
    return Assignment.objects.filter(
        campaign=campaign, volunteer=volunteer, state=Assignment.State.ANSWERED
    ).count()


def task_candidates(*, campaign: Campaign, volunteer: Volunteer, now: Any, gold: bool) -> QuerySet[Task]:
    """Open tasks this volunteer has not answered or skipped, with a free slot, most informative first.

    A task still needs max(min_answers - answers, 1) more answers (never more than max_answers in all);
    unexpired leases of other volunteers hold those slots. Gold tasks are shown to every volunteer once.
    """
    done_or_skipped = Assignment.objects.filter(
        task=OuterRef("pk"),
        volunteer=volunteer,
        state__in=[Assignment.State.ANSWERED, Assignment.State.SKIPPED],
    )
    open_leases = (
        Assignment.objects.filter(task=OuterRef("pk"), state=Assignment.State.LEASED, expires_at__gt=now)
        .exclude(volunteer=volunteer)
        .order_by()
        .values("task")
        .annotate(n=Count("pk"))
        .values("n")
    )
    queryset = Task.objects.filter(
        campaign=campaign, status=Task.Status.OPEN, is_gold=gold, source__ready=True
    ).filter(~Exists(done_or_skipped))
    if not gold:
        queryset = queryset.annotate(
            open_leases=Coalesce(Subquery(open_leases, output_field=IntegerField()), Value(0))
        ).filter(
            answer_count__lt=campaign.max_answers,
            open_leases__lt=Greatest(Value(campaign.min_answers) - F("answer_count"), Value(1)),
        )
    return queryset.order_by("-priority", "id")


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


def volunteer_progress(*, campaign: Campaign, volunteer: Volunteer | None) -> dict[str, int]:
    if volunteer is None:
        return {"answered": 0}
    return {"answered": volunteer_answered_count(campaign=campaign, volunteer=volunteer)}


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


ROLE_RANK = {
    CampaignMembership.Role.VIEWER: 1,
    CampaignMembership.Role.REVIEWER: 2,
    CampaignMembership.Role.OWNER: 3,
}


def role_allows(role: str | None, needed: str) -> bool:
    """Owners may do everything, reviewers review, viewers read."""
    return role is not None and ROLE_RANK.get(role, 0) >= ROLE_RANK[needed]


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

    return Source.objects.filter(campaign=campaign).annotate(n_tasks=Count("tasks")).order_by("id")


# ---------------------------------------------------------------- end of researcher workspace section
