"""Turn a lost database connection into a retryable 503 instead of a 500 with a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError, close_old_connections
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger("corroborate.resilience")


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        if (
            "locked" in str(exception).lower()
            or "connection" in str(exception).lower()
            or isinstance(exception, InterfaceError)
        ):
            logger.warning(
                "database unavailable",
                extra={
                    "path": request.path,
                    "error": type(exception).__name__,
                    "reason": str(exception)[:300],
                },
            )
            close_old_connections()
            response = JsonResponse(
                {
                    "detail": "The database is briefly unavailable; nothing was saved. Please retry.",
                    "retryable": True,
                },
                status=503,
            )
            response["Retry-After"] = "1"
            return response
        return None
