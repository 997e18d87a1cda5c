"""API authentication: Django sessions, with CSRF enforced for every session-holding client."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import SessionAuthentication


class CsrfSessionAuthentication(SessionAuthentication):
    """Session authentication that also enforces CSRF for anonymous volunteers who hold a session.

    DRF only checks CSRF for logged-in users; our anonymous volunteers are identified by their session
    cookie too, so a forged cross-site POST must be refused for them as well.
    """

    def authenticate(self, request: Any) -> tuple[Any, None] | None:
        result = super().authenticate(request)
        if result is None and request._request.COOKIES.get("sessionid"):
            self.enforce_csrf(request)
        return result


from drf_spectacular.authentication import SessionScheme  # noqa: E402  (registered on import)


class CsrfSessionScheme(SessionScheme):
    """Documents the session cookie (with CSRF header) in the OpenAPI schema."""

    target_class = "config.authentication.CsrfSessionAuthentication"
