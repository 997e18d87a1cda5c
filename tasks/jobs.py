"""django-q entry points: thin wrappers that run services for a recorded Job and report its progress."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from tasks import services
from tasks.models import Campaign, Job
from tasks.storage import delete_quietly, local_path

logger = logging.getLogger("corroborate.jobs")


def job_run(job_id: int) -> dict[str, Any]:
    job = Job.objects.get(pk=job_id)
    if job.status == Job.Status.DONE:
        return job.result
    services.job_progress(job, 0.0, "started")
    try:
        result = JOB_KINDS[job.kind](job)
    except services.IngestError as exc:
        services.job_finish(job, error=str(exc))
        _discard_uploads(job)
        return {"error": str(exc)}
    except Exception as exc:
        # Unexpected: keep the uploads so a retry can resume; record a readable reason.
        logger.exception("job failed", extra={"job": job.pk, "kind": job.kind})
        services.job_finish(job, error=f"{type(exc).__name__}: {exc}")
        raise
    services.job_finish(job, result=result)
    _discard_uploads(job)
    return result


def _discard_uploads(job: Job) -> None:
    delete_quietly(
        [
            name
            for name in (job.params.get("before"), job.params.get("after"), job.params.get("video"))
            if name
        ]
    )


def _ingest_imagery(job: Job) -> dict[str, Any]:
    params = job.params
    campaign = Campaign.objects.get(pk=job.campaign_id or 0)
    with contextlib.ExitStack() as stack:
        before = stack.enter_context(local_path(params["before"]))
        after = stack.enter_context(local_path(params["after"])) if params.get("after") else None
        return services.source_ingest_imagery(
            campaign=campaign,
            before=before,
            after=after,
            before_name=params.get("before_name"),
            after_name=params.get("after_name"),
            aoi=params.get("aoi"),
            tile_size_px=params.get("tile_size_px", 256),
            overlap_px=params.get("overlap_px", 32),
            uploaded_by=job.created_by,
            progress=lambda f, m: services.job_progress(job, f, m),
        )


def _ingest_video(job: Job) -> dict[str, Any]:
    params = job.params
    campaign = Campaign.objects.get(pk=job.campaign_id or 0)
    with local_path(params["video"]) as path:
        return services.source_ingest_video(
            campaign=campaign,
            path=path,
            original_name=params.get("video_name"),
            max_segment_seconds=params.get("max_segment_seconds", 10.0),
            uploaded_by=job.created_by,
            progress=lambda f, m: services.job_progress(job, f, m),
        )


JOB_KINDS = {"ingest_imagery": _ingest_imagery, "ingest_video": _ingest_video}
JOB_KINDS["export_evidence"] = lambda job: __import__("verification.jobs").jobs.export_evidence(job)
