"""Errors raised in English by the services and media checks, said in the page's language."""

from __future__ import annotations

from django.utils.translation import gettext


def said(exc: BaseException) -> str:
    """``exc``'s message in the active language: the translated template of the error it carries (itself or
    the error it was raised from, with the same words; tasks/messages.py) filled with the same figures. As
    raised when the message has no template, the template no translation, or the figures do not fit."""
    text = str(exc)
    seen: BaseException | None = exc
    while seen is not None:
        template = getattr(seen, "template", None)
        if isinstance(template, str) and str(seen) == text:
            figures = getattr(seen, "figures", None) or {}
            translated = gettext(template)
            try:
                return " ".join((translated % figures if figures else translated).split())
            except (KeyError, TypeError, ValueError):
                return text
        seen = seen.__cause__
    return text
