"""API plumbing shared by the apps: the error format."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.Throttled):
        response.data = {
            "detail": "Too many requests; please slow down.",
            "retry_after": getattr(exc, "wait", None),
        }
        # A newcomer refused by the site-wide budget may come in by proving some work instead of waiting.
        proof = getattr(context.get("request"), "newcomer_proof", None)
        if proof:
            response.data["proof"] = proof
    elif isinstance(response.data, list):
        response.data = {"detail": response.data}
    return response


def error(message: str, http_status: int = status.HTTP_400_BAD_REQUEST, **fields: Any) -> Response:
    return Response({"detail": message, **fields}, status=http_status)


def client_is_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The site's 404 (handler404): for a path under /api/, where the callers are programs, the body DRF
    gives its own 404s; the HTML page (templates/404.html) everywhere else."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": exceptions.NotFound.default_detail}, status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)
