"""HTTP API for campaigns and tasks: listing, next task for a volunteer, task detail."""

from __future__ import annotations

from typing import Any

from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from tasks import selectors, services
from tasks.media import task_media_urls
from tasks.models import Assignment, Campaign, Task


class VolunteerThrottle(SimpleRateThrottle):
    """Per-session (or per-user) limits, generous for people and tight for scripts; no IP address is kept."""

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


class NextTaskThrottle(VolunteerThrottle):
    scope = "next_task"


class AnswerThrottle(VolunteerThrottle):
    scope = "answers"


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
        "progress": serializers.DictField(),
    },
)


class NextTaskView(APIView):
    throttle_classes = [NextTaskThrottle]

    @extend_schema(
        request=None,
        responses={
            200: NextTaskResponse,
            204: OpenApiResponse(description="Nothing left for this volunteer"),
        },
        summary="Lease the next task for the calling volunteer",
    )
    def post(self, request: Request, slug: str) -> Response:
        campaign = get_object_or_404(Campaign, slug=slug)
        if campaign.status != Campaign.Status.LIVE:
            return Response(
                {"detail": f"campaign {slug} is {campaign.status}"}, status=status.HTTP_409_CONFLICT
            )
        volunteer = services.volunteer_for_request(request._request, create=True)
        assert volunteer is not None
        get_token(request._request)  # a CSRF cookie for the answers that follow
        if volunteer.is_blocked:
            return Response(status=status.HTTP_204_NO_CONTENT)
        assignment = services.task_lease_next(campaign=campaign, volunteer=volunteer)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(next_task_payload(assignment, campaign=campaign))


def next_task_payload(assignment: Assignment, *, campaign: Campaign) -> dict[str, Any]:
    task = Task.objects.select_related("campaign", "source", "after_source").get(pk=assignment.task_id)
    return {
        "task": task_payload(task, for_volunteer=True),
        "question_set": campaign.question_set,
        "lease_expires_at": assignment.expires_at.isoformat(),
        "progress": selectors.volunteer_progress(campaign=campaign, volunteer=assignment.volunteer),
    }


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
        if task.kind == Task.Kind.SEGMENT:
            payload["near_duplicates"] = selectors.segment_near_duplicates(task)
        return Response(payload)
