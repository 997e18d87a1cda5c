"""Translated names of the values pages show: campaign states and kinds, roles, task states."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import template
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from tasks import questions
from verification import reasons

register = template.Library()

_CAMPAIGN_STATUS = {"draft": _("Draft"), "live": _("Live"), "paused": _("Paused"), "finished": _("Finished")}
_CAMPAIGN_KIND = {"imagery": _("Imagery"), "video": _("Video")}
_ROLE = {"owner": _("owner"), "reviewer": _("reviewer"), "viewer": _("viewer")}
_SOURCE_ROLE = {"image": _("single image"), "before": _("before"), "after": _("after"), "video": _("video")}
# How a consensus was worked out (Consensus.method).
_METHOD = {
    "incremental": _("updated at the latest answer"),
    "auto": _("campaign model"),
    "majority": _("majority vote"),
    "weighted": _("weighted vote"),
    "dawid_skene": _("Dawid-Skene"),
    "one_coin": _("one-coin Dawid-Skene"),
}
# One task (a badge on its page, a row of a list) and a count of tasks take different forms in some languages.
_TASK_STATUS = {
    "open": pgettext_lazy("one task", "open"),
    "retired": pgettext_lazy("one task", "retired"),
    "needs_review": pgettext_lazy("one task", "needs review"),
    "adjudicated": pgettext_lazy("one task", "adjudicated"),
}
_TASKS_STATUS = {
    "open": pgettext_lazy("count of tasks", "open"),
    "retired": pgettext_lazy("count of tasks", "retired"),
    "needs_review": pgettext_lazy("count of tasks", "needs review"),
    "adjudicated": pgettext_lazy("count of tasks", "adjudicated"),
}


def _namer(names: dict[str, Any]) -> Callable[[str | None], str]:
    def name(value: str | None) -> str:
        return str(names.get(value or "", value or ""))

    return name


# {{ campaign.status|campaign_status }}, {{ campaign.kind|campaign_kind }}, {{ role|role_name }},
# {{ source.role|source_role }}, {{ consensus.method|method_name }}, {{ task.status|task_status }} and, beside a count of tasks,
# {{ status|tasks_status }}.
for _filter, _names in (
    ("campaign_status", _CAMPAIGN_STATUS),
    ("campaign_kind", _CAMPAIGN_KIND),
    ("role_name", _ROLE),
    ("source_role", _SOURCE_ROLE),
    ("method_name", _METHOD),
    ("task_status", _TASK_STATUS),
    ("tasks_status", _TASKS_STATUS),
):
    register.filter(_filter, _namer(_names))


# What researcher.js writes on the page (question set builder, uploads, jobs), in the page's language:
# {% researcher_strings as strings %}{{ strings|json_script:"researcher-strings" }}.
_RESEARCHER_STRINGS = {
    "type_single": _("Single choice"),
    "type_multiple": _("Multiple choice"),
    "type_points": _("Mark points on the image"),
    "type_location": _("Location guess"),
    "type_text": _("Free-text note"),
    "value": _("Value"),
    "value_placeholder": _("value"),
    "label": _("Label"),
    "label_placeholder": _("Label shown to volunteers"),
    "help": _("Help"),
    "help_placeholder": _("Help text"),
    "image": _("Example image URL"),
    "remove": _("Remove"),
    "key": _("Key"),
    "type": _("Type"),
    "primary": _("Primary"),
    "required": _("Required"),
    "move_up": _("Move up"),
    "remove_question": _("Remove question"),
    "question": _("Question"),
    "add_choice": _("Add choice"),
    "add_unsure": _("Add “Unsure”"),
    "unsure": _("Unsure"),
    "unsure_help": _("Never penalised."),
    "yes": _("Yes"),
    "no": _("No"),
    "bad_json": _("The JSON below cannot be shown as a form; correct it there."),
    "new_type": _("Type of the new question"),
    "add_question": _("Add question"),
    "upload_http": _("The server could not take the upload (HTTP %(status)s)."),
    "upload_refused": _("The upload was refused."),
    "upload_interrupted": _("The upload was interrupted; check the connection and try again."),
}


@register.simple_tag
def researcher_strings() -> dict[str, str]:
    return {key: str(text) for key, text in _RESEARCHER_STRINGS.items()}


@register.filter
def choice_name(value: str | None, campaign: Any) -> str:
    """{{ row.label|choice_name:campaign }}: a consensus or answer label as the campaign's question set names
    it (the value itself stays in exports and in the page's data attributes)."""
    names = getattr(campaign, "_label_names", None)
    if names is None:
        names = questions.label_names(campaign.question_set or {})
        campaign._label_names = names
    return questions.label_name(names, value)


@register.filter
def retirement_reason(consensus: Any) -> str:
    """{{ consensus|retirement_reason }} (a Consensus or a review-queue row): why the task retired, went to
    review or still collects answers, in the page's language (verification/reasons.py)."""
    if consensus is None:
        return ""
    if isinstance(consensus, dict):
        return reasons.reason_text(consensus.get("reason") or "", consensus.get("reason_params"))
    return reasons.reason_text(consensus.reason, consensus.reason_params)
