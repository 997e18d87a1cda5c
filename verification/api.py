"""HTTP API for answers and consensus."""

from __future__ import annotations

import uuid
from typing import Any

from django.shortcuts import get_object_or_404
from django.utils.decorators import method_decorator
from django.views.decorators.gzip import gzip_page
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tasks import selectors as task_selectors
from tasks.api import AnswerBurstThrottle, AnswerThrottle, NextTaskResponse, lease_next_payload
from tasks.models import Campaign, Task
from tasks.questions import AnswerError, primary_label
from tasks.services import volunteer_for_request
from verification import selectors
from verification.models import Answer
from verification.services import AnswerConflict, TaskNotAnswerable, answer_submit


class AnswerIn(serializers.Serializer):
    answer = serializers.DictField()
    client_id = serializers.UUIDField()
    duration_ms = serializers.IntegerField(
        min_value=0, max_value=24 * 3600 * 1000, required=False, allow_null=True
    )
    next = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Also lease this volunteer's next task of the campaign and return it as `next`: one "
        "request per task instead of two, for volunteers on slow connections.",
    )


AnswerOut = inline_serializer(
    "AnswerRecorded",
    {
        "id": serializers.IntegerField(),
        "task_id": serializers.IntegerField(),
        "answer": serializers.DictField(),
        "client_id": serializers.UUIDField(),
        "created_at": serializers.DateTimeField(),
        "feedback": serializers.DictField(allow_null=True),
        "next": type(NextTaskResponse)(
            required=False,
            allow_null=True,
            help_text="Only when the request asked for it: the next-task body, or null when nothing is left "
            "for this volunteer (next-task's 204).",
        ),
    },
)


def answer_payload(answer: Answer) -> dict[str, Any]:
    task = answer.task
    feedback = None
    if task.is_gold and task.gold_answer is not None:
        expected = primary_label(task.campaign.question_set, task.gold_answer)
        feedback = {
            "gold": True,
            "correct": expected == answer.label,
            "expected": task.gold_answer,
            "explanation": task.gold_explanation,
        }
    return {
        "id": answer.pk,
        "task_id": answer.task_id,
        "answer": answer.answer,
        "client_id": str(answer.client_id),
        "created_at": answer.created_at.isoformat(),
        "feedback": feedback,
    }


class AnswerCreateView(APIView):
    throttle_classes = [AnswerBurstThrottle, AnswerThrottle]

    @extend_schema(
        request=AnswerIn,
        responses={
            201: AnswerOut,
            200: AnswerOut,
            400: OpenApiResponse(description="Invalid answer (field-level message)"),
            403: OpenApiResponse(description="No volunteer session"),
            409: OpenApiResponse(description="Already answered with another client_id, or task closed"),
        },
        summary="Submit an answer (idempotent by client_id)",
    )
    def post(self, request: Request, task_id: int) -> Response:
        body = AnswerIn(data=request.data)
        if not body.is_valid():
            return Response(
                {"detail": "invalid request", "errors": body.errors}, status=status.HTTP_400_BAD_REQUEST
            )
        volunteer = volunteer_for_request(request._request, create=False)
        if volunteer is None:
            return Response(
                {"detail": "no volunteer session: ask for a task first"}, status=status.HTTP_403_FORBIDDEN
            )
        # answer_submit reads the task and its campaign under the row lock; a missing task is a 404.
        task = Task(pk=task_id)
        try:
            answer, created = answer_submit(
                task=task,
                volunteer=volunteer,
                answer=body.validated_data["answer"],
                client_id=uuid.UUID(str(body.validated_data["client_id"])),
                duration_ms=body.validated_data.get("duration_ms"),
            )
        except AnswerError as exc:
            return Response(
                {"detail": "invalid answer", "errors": {exc.field: [exc.message]}},
                status=status.HTTP_400_BAD_REQUEST,
            )
        except (AnswerConflict, TaskNotAnswerable) as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except Task.DoesNotExist:
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        payload = answer_payload(answer)
        if body.validated_data["next"]:
            # The task and its campaign were read under the row lock by answer_submit (or with the repeat).
            payload["next"] = lease_next_payload(campaign=answer.task.campaign, volunteer=volunteer)
        return Response(payload, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ConsensusRowSerializer(serializers.Serializer):
    task_id = serializers.IntegerField()
    label = serializers.CharField(allow_null=True)  # type: ignore[assignment]
    confidence = serializers.FloatField()
    agreement = serializers.FloatField()
    n_answers = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Task.Status.choices)


@method_decorator(gzip_page, name="dispatch")  # one row per task: 5 MB for 40,000 tiles plain
class ConsensusListView(APIView):
    @extend_schema(
        responses={
            200: ConsensusRowSerializer(many=True),
            403: OpenApiResponse(description="Researchers only"),
        },
        summary="Consensus for every task of a campaign (researchers)",
    )
    def get(self, request: Request, slug: str) -> Response:
        campaign = get_object_or_404(Campaign, slug=slug)
        if not request.user.is_authenticated:
            return Response({"detail": "Authentication required."}, status=status.HTTP_403_FORBIDDEN)
        if task_selectors.role_of(user=request.user, campaign=campaign) is None:
            return Response(
                {"detail": "Researchers of this campaign only."}, status=status.HTTP_403_FORBIDDEN
            )
        columns = ("task_id", "label", "confidence", "agreement", "n_answers", "status")
        return Response([{k: row[k] for k in columns} for row in selectors.consensus_table(campaign)])
