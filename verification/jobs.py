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
