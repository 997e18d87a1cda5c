"""django-q entry point for evidence exports: runs the export service for a recorded Job, with progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from tasks.models import Campaign, Job
from verification import services


def export_root() -> Path:
    return Path(settings.EXPORT_ROOT)


def s3_target_for(campaign: Campaign) -> services.S3Target | None:
    """Where exports are uploaded when the site stores files on S3 (settings, not the request, decide)."""
    bucket = getattr(settings, "EXPORT_S3_BUCKET", "") or getattr(settings, "S3_BUCKET", "")
    if not bucket:
        return None
    return services.S3Target(
        bucket=bucket,
        prefix=f"exports/{campaign.slug}",
        endpoint_url=getattr(settings, "S3_ENDPOINT_URL", None),
        lock_mode=getattr(settings, "EXPORT_OBJECT_LOCK_MODE", None) or None,
        lock_days=int(getattr(settings, "EXPORT_OBJECT_LOCK_DAYS", 0) or 0),
        legal_hold=bool(getattr(settings, "EXPORT_LEGAL_HOLD", False)),
    )


def export_evidence(job: Job) -> dict[str, Any]:
    from tasks.services import IngestError, job_progress

    campaign = Campaign.objects.get(pk=job.campaign_id or 0)
    folder = export_root() / campaign.slug
    folder.mkdir(parents=True, exist_ok=True)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    out = folder / f"{campaign.slug}-{stamp}-job{job.pk}"
    try:
        return services.evidence_export(
            campaign=campaign,
            out=out,
            evidence_set_name=job.params.get("evidence_set") or None,
            created_by=job.created_by,
            s3=s3_target_for(campaign),
            progress=lambda fraction, message: job_progress(job, fraction, message),
        )
    except services.ExportError as exc:
        # job_run reports IngestError as a clean, user-facing failure (no traceback in the job).
        raise IngestError(str(exc)) from exc


def refit_all_campaigns() -> list[dict[str, Any]]:
    """Refit the consensus of every live campaign that has answers, reviewer decisions or audit answers
    newer than its last refit (experts' labels anchor the model too).

    Run every few minutes by the "refit-consensus" schedule (created by a data migration): the refit
    updates volunteers' reliabilities, the class prior and the temperature that the per-answer
    incremental consensus uses, so retirement follows the whole campaign's evidence.
    """
    import logging

    from django.utils.dateparse import parse_datetime

    from verification.models import Answer, AuditItem, Decision

    logger = logging.getLogger("corroborate.jobs")
    summaries = []
    for campaign in Campaign.objects.filter(status=Campaign.Status.LIVE).order_by("pk"):
        refit_at = parse_datetime(str((campaign.aggregation_state or {}).get("refit_at") or ""))
        answers = Answer.objects.filter(campaign=campaign)
        decisions = Decision.objects.filter(task__campaign=campaign)
        audits = AuditItem.objects.filter(campaign=campaign, audited_at__isnull=False)
        if refit_at is not None:
            answers = answers.filter(created_at__gt=refit_at)
            decisions = decisions.filter(created_at__gt=refit_at)
            audits = audits.filter(audited_at__gt=refit_at)
        if not answers.exists() and not (decisions.exists() or audits.exists()):
            continue
        try:
            summaries.append(services.consensus_recompute_campaign(campaign=campaign))
        except Exception:
            # One campaign's failure must not stop the others' refits; the next run retries it.
            logger.exception("consensus refit failed", extra={"campaign": campaign.slug})
    return summaries


def ledger_chain_all() -> int:
    """Chain every campaign's ledger records still waiting (PostgreSQL), every minute ("ledger-chain").

    Each record is chained right after its transaction commits, unless another request was chaining that
    campaign at that moment and had already read what was waiting: then the next commit in the campaign
    takes it, or, when the campaign fell quiet, this job.
    """
    from django.db import connection

    from verification.models import LedgerPending

    if connection.vendor != "postgresql":
        return 0
    campaign_ids = LedgerPending.objects.values_list("campaign_id", flat=True).distinct()
    return sum(max(services.ledger_chain_pending(campaign_id=pk), 0) for pk in campaign_ids)
