"""Researcher pages for evidence exports: start an export job, watch its progress, download the package."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from tasks import selectors
from tasks.models import Campaign, CampaignMembership, Job
from tasks.services import job_create
from verification.models import EvidenceSet, Export
from verification.packages import iter_tar, safe_member

EXPORTERS = (CampaignMembership.Role.OWNER, CampaignMembership.Role.REVIEWER)


def _membership(request: HttpRequest, slug: str) -> tuple[Campaign, str]:
    campaign = get_object_or_404(Campaign, slug=slug)
    role = selectors.role_of(user=request.user, campaign=campaign)
    if role is None:
        raise Http404("no such campaign")  # non-members do not learn that it exists
    return campaign, role


def _workspace(campaign: Campaign, role: str) -> dict[str, Any]:
    """What the research workspace's frame (frontend/researcher_base.html) shows: breadcrumbs and tabs."""
    return {"campaign": campaign, "role": role, **selectors.role_flags(role)}


def _job_payload(job: Job, campaign: Campaign) -> dict[str, Any]:
    export_id = (job.result or {}).get("export")
    return {
        "id": job.pk,
        "status": job.status,
        "progress": round(job.progress, 3),
        "message": job.message,
        "result": job.result,
        "download_url": (
            reverse("export-download", args=[campaign.slug, export_id])
            if job.status == Job.Status.DONE and export_id
            else None
        ),
    }


@login_required
@require_http_methods(["GET", "POST"])
def export_list(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, role = _membership(request, slug)
    can_export = role in EXPORTERS
    if request.method == "POST":
        if not can_export:
            return HttpResponseForbidden("only owners and reviewers can export")
        name = request.POST.get("evidence_set", "").strip()
        if name and not EvidenceSet.objects.filter(campaign=campaign, name=name).exists():
            raise Http404("no such evidence set")
        job = job_create(
            kind="export_evidence",
            params={"evidence_set": name or None},
            campaign=campaign,
            created_by=request.user,  # type: ignore[arg-type]
        )
        return redirect("export-job", slug=campaign.slug, job_id=job.pk)
    exports = Export.objects.filter(campaign=campaign).select_related("evidence_set").order_by("-created_at")
    jobs = Job.objects.filter(campaign=campaign, kind="export_evidence").order_by("-created_at")[:10]
    set_names = sorted(set(EvidenceSet.objects.filter(campaign=campaign).values_list("name", flat=True)))
    return render(
        request,
        "verification/exports.html",
        {
            **_workspace(campaign, role),
            "can_export": can_export,
            "exports": exports[:50],
            "jobs": [_job_payload(job, campaign) for job in jobs],
            "set_names": set_names,
            # The evidence set page's Export button names its set.
            "chosen_set": request.GET.get("set", ""),
        },
    )


@login_required
def export_job(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    campaign, role = _membership(request, slug)
    job = get_object_or_404(Job, pk=job_id, campaign=campaign, kind="export_evidence")
    payload = _job_payload(job, campaign)
    if request.GET.get("format") == "json":
        return JsonResponse(payload)
    return render(request, "verification/export_job.html", {**_workspace(campaign, role), "job": payload})


@login_required
def export_download(request: HttpRequest, slug: str, export_id: int) -> HttpResponseBase:
    """The package as one tar streamed from disk, one file of it (?file=data/...), or a presigned S3 link."""
    campaign, _ = _membership(request, slug)
    export = get_object_or_404(Export, pk=export_id, campaign=campaign, status=Export.Status.COMPLETE)
    from pathlib import Path

    root = Path(export.path)
    relpath = request.GET.get("file")
    if relpath:
        member = safe_member(root, relpath) if root.is_dir() else None
        if member is None:
            raise Http404("no such file in the package")
        return FileResponse(open(member, "rb"), as_attachment=True, filename=member.name)
    if export.uploaded and export.s3_uri:
        from verification import s3

        url = s3.presigned_url(
            client=s3.s3_client(), uri=export.s3_uri, expires_seconds=3600, filename=f"{root.name}.tar"
        )
        return HttpResponseRedirect(url)
    if not root.is_dir():
        raise Http404("the package is no longer on this server")
    response = StreamingHttpResponse(iter_tar(root), content_type="application/x-tar")
    response["Content-Disposition"] = f'attachment; filename="{root.name}.tar"'
    return response
