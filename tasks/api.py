"""HTTP API for campaigns and tasks: listing, next task for a volunteer, task detail."""

from __future__ import annotations

from typing import Any

from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config import proof_of_work
from config.throttling import AtomicRateThrottle
from tasks import selectors, services
from tasks.media import task_media_urls
from tasks.models import Assignment, Campaign, Task, Volunteer


class VolunteerThrottle(AtomicRateThrottle):
    """Per-session (or per-user) limits, generous for people and tight for scripts; no IP address is kept.

    Rates may name a window of several seconds ("10/10s"), for burst limits next to per-minute ones.
    """

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        from django.conf import settings

        if not settings.CORROBORATE_RATE_LIMITS:
            return None
        ident: str | None
        if request.user and request.user.is_authenticated:
            ident = f"u{request.user.pk}"
        else:
            ident = request.session.get("volunteer") if hasattr(request, "session") else None
            if not ident:
                return None
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def parse_rate(self, rate: str | None) -> tuple[int | None, int | None]:
        if rate is None:
            return (None, None)
        count, period = rate.split("/")
        digits = "".join(c for c in period if c.isdigit())
        unit = period[len(digits) :][:1]
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
        return int(count), seconds * int(digits or 1)


class NewcomerThrottle(VolunteerThrottle):
    """One site-wide budget for requests that come without a volunteer session.

    A script that throws its cookies away would otherwise create volunteers without limit; with no IP
    address to tell clients apart, they share this budget (generous: a campaign launch brings crowds).
    """

    scope = "newcomers"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        from django.conf import settings

        if not settings.CORROBORATE_RATE_LIMITS or (request.user and request.user.is_authenticated):
            return None
        if hasattr(request, "session") and request.session.get("volunteer"):
            return None
        return self.cache_format % {"scope": self.scope, "ident": "all"}

    def allow_request(self, request: Any, view: Any) -> bool:
        if super().allow_request(request, view):
            return True
        # Past the budget, a newcomer who shows a proof of work on one of our challenges comes in anyway; one
        # who does not is refused with a fresh challenge (config/proof_of_work.py, config/api.py).
        if proof_of_work.proof_admits(request.headers.get(proof_of_work.HEADER, "")):
            return True
        request.newcomer_proof = proof_of_work.challenge_for_refused_newcomer()
        return False


class NextTaskThrottle(VolunteerThrottle):
    scope = "next_task"


class NextTaskBurstThrottle(VolunteerThrottle):
    scope = "next_task_burst"


class AnswerThrottle(VolunteerThrottle):
    scope = "answers"


class AnswerBurstThrottle(VolunteerThrottle):
    scope = "answers_burst"


class CampaignSerializer(serializers.Serializer):  # type: ignore[type-arg]
    slug = serializers.SlugField()
    title = serializers.CharField()
    description = serializers.CharField()
    kind = serializers.ChoiceField(choices=Campaign.Kind.choices)
    status = serializers.ChoiceField(choices=Campaign.Status.choices)
    task_count = serializers.IntegerField()
    retired_count = serializers.IntegerField()
    answer_count = serializers.IntegerField()


class TaskSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    campaign = serializers.SlugField()
    kind = serializers.ChoiceField(choices=Task.Kind.choices)
    media = serializers.DictField()
    bbox = serializers.ListField(child=serializers.FloatField(), allow_null=True, required=False)
    footprint = serializers.DictField(allow_null=True, required=False)
    start_seconds = serializers.FloatField(allow_null=True, required=False)
    end_seconds = serializers.FloatField(allow_null=True, required=False)
    is_gold = serializers.BooleanField()
    flags = serializers.DictField()
    source = serializers.DictField()  # type: ignore[assignment]
    window = serializers.DictField(allow_null=True, required=False)


def task_payload(task: Task, *, for_volunteer: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": task.pk,
        "campaign": task.campaign.slug,
        "kind": task.kind,
        "media": task_media_urls(task),
        "bbox": task.bbox,
        "footprint": task.footprint,
        "start_seconds": task.start_seconds,
        "end_seconds": task.end_seconds,
        "window": task.window,
        "flags": task.flags,
        # Volunteers are not told a task is gold until after they answer it.
        "is_gold": False if for_volunteer else task.is_gold,
        "source": {
            "id": task.source_id,
            "original_name": task.source.original_name,
            "sha256": task.source.sha256,
            "kind": task.source.kind,
        },
    }
    if task.after_source_id and task.after_source is not None:
        payload["source"]["after"] = {
            "id": task.after_source_id,
            "original_name": task.after_source.original_name,
            "sha256": task.after_source.sha256,
        }
    if task.kind == Task.Kind.SEGMENT:
        # "Seen before": matches with videos ingested earlier, the local analogue of reverse image search.
        payload["near_duplicates"] = selectors.segment_near_duplicates(task)
    return payload


def campaign_payload(campaign: Campaign) -> dict[str, Any]:
    return {
        "slug": campaign.slug,
        "title": campaign.title,
        "description": campaign.description,
        "kind": campaign.kind,
        "status": campaign.status,
        "task_count": getattr(campaign, "task_count", 0),
        "retired_count": getattr(campaign, "retired_count", 0),
        "answer_count": selectors.campaign_answer_count(campaign),
    }


class CampaignListView(APIView):
    @extend_schema(responses=CampaignSerializer(many=True), summary="Campaigns visible to the caller")
    def get(self, request: Request) -> Response:
        campaigns = selectors.campaigns_with_counts(selectors.campaigns_visible_to(request.user))
        return Response([campaign_payload(c) for c in campaigns])


NextTaskResponse = inline_serializer(
    "NextTask",
    {
        "task": TaskSerializer(),
        "question_set": serializers.DictField(),
        "lease_expires_at": serializers.DateTimeField(),
        "lease_seconds": serializers.IntegerField(),
        "graphic": serializers.BooleanField(),
        "graphic_opt_in": serializers.BooleanField(),
        "progress": serializers.DictField(),
    },
)


class NextTaskView(APIView):
    throttle_classes = [NewcomerThrottle, NextTaskBurstThrottle, NextTaskThrottle]

    @extend_schema(
        request=None,
        responses={
            200: NextTaskResponse,
            204: OpenApiResponse(description="Nothing left for this volunteer"),
            429: OpenApiResponse(
                description="Too many requests; the body says when to retry (`retry_after`, seconds). A "
                "newcomer refused by the site-wide budget is also offered `proof`: `challenge`, `bits` and "
                "`header`; sending the request again with that header set to `challenge#nonce`, where the "
                "SHA-256 of that value starts with `bits` zero bits, lets the newcomer in at once (once per "
                "challenge)"
            ),
        },
        summary="Lease the next task for the calling volunteer",
    )
    def post(self, request: Request, slug: str) -> Response:
        campaign = selectors.campaign_by_slug(slug)
        if campaign is None:
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        if campaign.status != Campaign.Status.LIVE:
            return Response(
                {"detail": f"campaign {slug} is {campaign.status}"}, status=status.HTTP_409_CONFLICT
            )
        volunteer = services.volunteer_for_request(request._request, create=True)
        assert volunteer is not None
        get_token(request._request)  # a CSRF cookie for the answers that follow
        payload = lease_next_payload(campaign=campaign, volunteer=volunteer)
        if payload is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(payload)


def lease_next_payload(*, campaign: Campaign, volunteer: Volunteer) -> dict[str, Any] | None:
    """Lease the volunteer's next task: the next-task body, or None for "nothing left". The answers
    endpoint uses it for ``"next": true``."""
    leased = services.task_lease_next_with_stats(campaign=campaign, volunteer=volunteer)
    if leased is None:
        return None
    return next_task_payload(leased.assignment, campaign=campaign, stats=leased.stats)


def next_task_payload(
    assignment: Assignment, *, campaign: Campaign, stats: dict[str, int] | None = None
) -> dict[str, Any]:
    task = assignment.task
    if task.campaign_id != campaign.pk or "source" not in task._state.fields_cache:
        task = Task.objects.select_related("source", "after_source").get(pk=assignment.task_id)
    task.campaign = campaign
    volunteer = assignment.volunteer
    return {
        "task": task_payload(task, for_volunteer=True),
        "question_set": campaign.question_set,
        "lease_expires_at": assignment.expires_at.isoformat(),
        "lease_seconds": campaign.lease_seconds,
        "graphic": bool((task.flags or {}).get("graphic")),
        "graphic_opt_in": volunteer.graphic_opt_in,
        "progress": selectors.volunteer_progress(
            campaign=campaign, volunteer=volunteer, now=assignment.leased_at, stats=stats
        ),
    }


class TaskLeaseView(APIView):
    """Renew the calling volunteer's lease on a task while they work on it."""

    throttle_classes = [NextTaskBurstThrottle, NextTaskThrottle]

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "LeaseRenewed",
                {"task_id": serializers.IntegerField(), "lease_expires_at": serializers.DateTimeField()},
            ),
            403: OpenApiResponse(description="No volunteer session"),
            409: OpenApiResponse(description="No lease on this task, or it expired and the task moved on"),
        },
        summary="Renew the lease on a task",
    )
    def post(self, request: Request, task_id: int) -> Response:
        task = get_object_or_404(Task.objects.select_related("campaign"), pk=task_id)
        volunteer = services.volunteer_for_request(request._request, create=False)
        if volunteer is None:
            return Response(
                {"detail": "no volunteer session: ask for a task first"}, status=status.HTTP_403_FORBIDDEN
            )
        try:
            assignment = services.lease_renew(task=task, volunteer=volunteer)
        except services.LeaseError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response({"task_id": task.pk, "lease_expires_at": assignment.expires_at.isoformat()})


class TaskSkipView(APIView):
    """Pass on a task: it is never served to this volunteer again."""

    throttle_classes = [NextTaskBurstThrottle, NextTaskThrottle]

    @extend_schema(
        request=None,
        responses={
            204: OpenApiResponse(description="Skipped"),
            403: OpenApiResponse(description="No volunteer session"),
            409: OpenApiResponse(description="Already answered"),
        },
        summary="Skip a task",
    )
    def post(self, request: Request, task_id: int) -> Response:
        task = get_object_or_404(Task, pk=task_id)
        volunteer = services.volunteer_for_request(request._request, create=False)
        if volunteer is None:
            return Response(
                {"detail": "no volunteer session: ask for a task first"}, status=status.HTTP_403_FORBIDDEN
            )
        try:
            services.task_skip(task=task, volunteer=volunteer)
        except services.LeaseError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TaskDetailView(APIView):
    @extend_schema(responses=TaskSerializer, summary="Task detail (with consensus for researchers)")
    def get(self, request: Request, task_id: int) -> Response:
        task = get_object_or_404(
            Task.objects.select_related("campaign", "source", "after_source"), pk=task_id
        )
        role = selectors.role_of(user=request.user, campaign=task.campaign)
        if role is None and task.campaign.status != Campaign.Status.LIVE:
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        payload = task_payload(task, for_volunteer=role is None)
        if role is not None:
            from verification.selectors import consensus_payload

            payload["status"] = task.status
            payload["consensus"] = consensus_payload(task)
            payload["source"]["metadata"] = task.source.metadata
        return Response(payload)
