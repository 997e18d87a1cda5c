"""django-q entry points for verification: thin wrappers that call services."""

from __future__ import annotations

import logging
from typing import Any

from django.utils.dateparse import parse_datetime

from tasks.models import Campaign
from verification import services
from verification.models import Answer

logger = logging.getLogger("corroborate.jobs")


def refit_all_campaigns() -> list[dict[str, Any]]:
    """Refit the consensus of every live campaign that has answers newer than its last refit.

    Run every few minutes by the "refit-consensus" schedule (created by a data migration): the refit
    updates volunteers' reliabilities, the class prior and the temperature that the per-answer
    incremental consensus uses, so retirement follows the whole campaign's evidence.
    """
    summaries = []
    for campaign in Campaign.objects.filter(status=Campaign.Status.LIVE).order_by("pk"):
        refit_at = parse_datetime(str((campaign.aggregation_state or {}).get("refit_at") or ""))
        answers = Answer.objects.filter(campaign=campaign)
        if refit_at is not None:
            answers = answers.filter(created_at__gt=refit_at)
        if not answers.exists():
            continue
        try:
            summaries.append(services.consensus_recompute_campaign(campaign=campaign))
        except Exception:
            # One campaign's failure must not stop the others' refits; the next run retries it.
            logger.exception("consensus refit failed", extra={"campaign": campaign.slug})
    return summaries
