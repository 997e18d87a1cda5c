"""Why a task retired, went to review or is still collecting answers: one sentence per case, with its figures.

A consensus stores the sentence in English (``Consensus.reason``: exports, the API, the ledger read it) and
the case with its figures (``Consensus.reason_params``: ``{"key": ..., "n": ..., ...}``), so that a page can
say it again in the reader's language (`reason_text`). The templates are marked for translation but
translated only when shown.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext, gettext_noop

TEMPLATES: dict[str, str] = {
    "reached": gettext_noop(
        "confidence %(confidence).3f reached the threshold %(needed).3f after %(n)d answers (minimum %(min)d)"
    ),
    "reached_at_max": gettext_noop(
        "confidence %(confidence).3f reached the threshold %(threshold).3f at the maximum of %(n)d answers"
    ),
    "settled": gettext_noop(
        "label settled (the %(remaining)d more answers it could get would change its label with probability "
        "%(change).3f) and confidence %(confidence).3f reached the threshold %(threshold).3f after %(n)d answers"
    ),
    "split_at_max": gettext_noop(
        "%(n)d answers (the maximum is %(max)d) split with a lead of %(margin)d vote(s) (needs %(lead)d), "
        "although the model's confidence is %(confidence).3f: sent to expert review"
    ),
    "unsure_at_max": gettext_noop(
        "%(n)d answers (the maximum is %(max)d) without reaching confidence %(threshold).3f: sent to expert "
        "review"
    ),
    "settled_low": gettext_noop(
        "label settled at confidence %(confidence).3f, below the threshold %(threshold).3f: the %(remaining)d "
        "more answers it could get would change its label with probability %(change).3f, so more answers would "
        "not help: sent to expert review"
    ),
    "collecting_min": gettext_noop("collecting answers: %(n)d so far (minimum %(min)d)"),
    "collecting": gettext_noop(
        "collecting answers: %(n)d so far, confidence %(confidence).3f (needs %(needed).3f); the %(remaining)d "
        "more answers it could get would change its label with probability %(change).3f"
    ),
    "collecting_lead": gettext_noop(
        "collecting answers: %(n)d so far, confidence %(confidence).3f (needs %(needed).3f), a lead of "
        "%(margin)d vote(s) (needs %(lead)d); the %(remaining)d more answers it could get would change its "
        "label with probability %(change).3f"
    ),
    "audit": gettext_noop(
        "the expert audit answered %(label)s where the crowd said %(crowd)s: sent to expert review"
    ),
}


def reason(key: str, **figures: Any) -> tuple[str, dict[str, Any]]:
    """The English sentence for case ``key`` and what `reason_text` needs to say it again."""
    params = {"key": key, **figures}
    return TEMPLATES[key] % figures, params


def reason_text(stored: str, params: dict[str, Any] | None) -> str:
    """The stored reason in the active language; the stored English when its case is unknown (a consensus
    written before cases were recorded) or its figures do not fit the template."""
    template = TEMPLATES.get(str((params or {}).get("key", "")))
    if template is None:
        return stored
    try:
        return gettext(template) % params
    except (KeyError, TypeError, ValueError):
        return stored
