"""Translated names of the values pages show: campaign states and kinds, roles, task states."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import template
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

register = template.Library()

_CAMPAIGN_STATUS = {"draft": _("Draft"), "live": _("Live"), "paused": _("Paused"), "finished": _("Finished")}
_CAMPAIGN_KIND = {"imagery": _("Imagery"), "video": _("Video")}
_ROLE = {"owner": _("owner"), "reviewer": _("reviewer"), "viewer": _("viewer")}
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
# {{ task.status|task_status }} and, beside a count of tasks, {{ status|tasks_status }}.
for _filter, _names in (
    ("campaign_status", _CAMPAIGN_STATUS),
    ("campaign_kind", _CAMPAIGN_KIND),
    ("role_name", _ROLE),
    ("task_status", _TASK_STATUS),
    ("tasks_status", _TASKS_STATUS),
):
    register.filter(_filter, _namer(_names))
