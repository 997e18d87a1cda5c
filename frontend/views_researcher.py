"""Researcher workspace pages: set-up, uploads, dashboards, map, review, evidence sets, staged campaigns.

Every view starts with `_campaign_for`, which checks the user's role in the campaign: not a member is a 404
(a campaign's existence is not disclosed), a member without the needed role a 403.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext, gettext_lazy, ngettext, pgettext
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from frontend import charts, forms
from frontend.i18n import said
from tasks import selectors, services
from tasks.media import media_url, task_media_urls
from tasks.models import Campaign, CampaignMembership, Job, Task, Volunteer
from tasks.questions import (
    IMAGERY_QUESTION_SET,
    VIDEO_QUESTION_SET,
    AnswerError,
    answer_for_label,
    label_name,
    label_names,
)
from verification import selectors as verification_selectors
from verification import services as verification_services
from verification.models import EvidenceSet

VIEWER = CampaignMembership.Role.VIEWER
REVIEWER = CampaignMembership.Role.REVIEWER
OWNER = CampaignMembership.Role.OWNER


def _user(request: HttpRequest) -> User:
    """The logged-in user (every view that calls this is behind login_required)."""
    return cast(User, request.user)


def _campaign_for(request: HttpRequest, slug: str, needed: str = VIEWER) -> tuple[Campaign, str]:
    campaign = Campaign.objects.filter(slug=slug).first()
    role = selectors.role_of(user=request.user, campaign=campaign) if campaign is not None else None
    if campaign is None or role is None:
        raise Http404("No such campaign")
    if not selectors.role_allows(role, needed):
        raise PermissionDenied(f"This needs the {needed} role in {campaign.title}")
    return campaign, role


def json_login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """JSON endpoints answer 403 to anonymous callers instead of redirecting to the login page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"detail": "Authentication required."}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


def _page(
    request: HttpRequest, template: str, campaign: Campaign, role: str, *, status: int = 200, **context: Any
) -> HttpResponse:
    return render(
        request,
        f"frontend/{template}",
        {
            "campaign": campaign,
            "role": role,
            **selectors.role_flags(role),
            **context,
        },
        status=status,
    )


# ---------------------------------------------------------------- campaigns


@login_required
@require_GET
def researcher_home(request: HttpRequest) -> HttpResponse:
    if not selectors.is_researcher(request.user):
        raise PermissionDenied("The research workspace is for researchers of a campaign")
    campaigns = list(selectors.campaigns_with_counts(selectors.researcher_campaigns(request.user).distinct()))
    for campaign in campaigns:
        campaign.my_role = selectors.role_of(user=request.user, campaign=campaign)  # type: ignore[attr-defined]
    return render(
        request,
        "frontend/researcher_home.html",
        {"campaigns": campaigns, "can_create": selectors.can_create_campaigns(request.user)},
    )


@login_required
@require_http_methods(["GET", "POST"])
def campaign_new(request: HttpRequest) -> HttpResponse:
    if not selectors.can_create_campaigns(request.user):
        raise PermissionDenied("Ask an administrator for the right to create campaigns")
    form = forms.CampaignForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        settings = {k: data[k] for k in ("min_answers", "max_answers", "retirement_confidence", "gold_share")}
        try:
            campaign = services.campaign_create(
                slug=data["slug"],
                title=data["title"],
                kind=data["kind"],
                question_set=data["question_set"],
                description=data["description"],
                created_by=_user(request),
                status=data["status"],
                lease_seconds=data["lease_seconds"],
                parent=data["parent"],
                **settings,
            )
        except services.IngestError as exc:
            form.add_error(None, said(exc))
        else:
            messages.success(
                request,
                gettext("Campaign %(title)s created. Now add its imagery or video.")
                % {"title": campaign.title},
            )
            return redirect("researcher-sources", slug=campaign.slug)
    return render(
        request,
        "frontend/researcher_campaign_form.html",
        {"form": form, "defaults": {"imagery": IMAGERY_QUESTION_SET, "video": VIDEO_QUESTION_SET}},
    )


@login_required
@require_GET
def researcher_campaign(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, role = _campaign_for(request, slug)
    counts = verification_selectors.status_counts(campaign)
    return _page(
        request,
        "researcher_campaign.html",
        campaign,
        role,
        counts=counts,
        task_total=sum(counts.values()),
        gold_total=selectors.gold_task_count(campaign),
        answer_count=selectors.campaign_answer_count(campaign),
        sources=selectors.campaign_sources(campaign),
        jobs=[_job_payload(job) for job in selectors.campaign_recent_jobs(campaign, limit=5)],
        stages=campaign.stages.all(),
        evidence_sets=campaign.evidence_sets.order_by("name", "version"),
    )


@login_required
@require_http_methods(["GET", "POST"])
def campaign_settings(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, role = _campaign_for(request, slug, OWNER)
    initial = {f: getattr(campaign, f) for f in services.CAMPAIGN_SETTING_FIELDS if f != "question_set"}
    initial["question_set"] = json.dumps(campaign.question_set, indent=2, ensure_ascii=False)
    form = forms.CampaignForm(request.POST or None, user=request.user, campaign=campaign, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.campaign_update(campaign=campaign, by=_user(request), **form.cleaned_data)
        except services.IngestError as exc:
            form.add_error(None, said(exc))
        else:
            messages.success(request, gettext("Settings saved."))
            return redirect("researcher-settings", slug=campaign.slug)
    return _page(
        request,
        "researcher_campaign_form.html",
        campaign,
        role,
        form=form,
        defaults={"imagery": IMAGERY_QUESTION_SET, "video": VIDEO_QUESTION_SET},
    )


@login_required
@require_http_methods(["GET", "POST"])
def campaign_members(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, role = _campaign_for(request, slug, OWNER)
    form = forms.MemberForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user, new_role = form.cleaned_data["username"], form.cleaned_data["role"]
        try:
            if new_role == forms.MemberForm.REMOVE:
                services.membership_remove(campaign=campaign, user=user, by=_user(request))
            else:
                services.membership_change(campaign=campaign, user=user, role=new_role, by=_user(request))
        except services.IngestError as exc:
            form.add_error(None, said(exc))
        else:
            if new_role == forms.MemberForm.REMOVE:
                text = gettext("%(user)s was removed from the campaign.")
            else:
                text = gettext("%(user)s is now %(role)s.")
            role_label = (
                CampaignMembership.Role(new_role).label if new_role != forms.MemberForm.REMOVE else ""
            )
            messages.success(request, text % {"user": user.get_username(), "role": str(role_label).lower()})
            return redirect("researcher-members", slug=campaign.slug)
    return _page(
        request,
        "researcher_members.html",
        campaign,
        role,
        form=form,
        members=selectors.campaign_members(campaign),
    )


# ---------------------------------------------------------------- sources and jobs


_SKIP_REASONS = {
    "empty": gettext_lazy("no data"),
    "outside_aoi": gettext_lazy("outside the area of interest"),
}


# The ingest's progress steps (tasks/services.py), as the researcher's language says them.
_PROGRESS_STEPS = {
    "validated": gettext_lazy("file checked"),
    "detecting shots": gettext_lazy("detecting shot cuts"),
    "rendition ready": gettext_lazy("video prepared for the browser"),
    "keyframes": gettext_lazy("extracting keyframes"),
}
_TILES_DONE = re.compile(r"(\d+) of (\d+) tiles")


def _progress_text(message: str) -> str:
    if message in ("", "done", "started"):
        return ""
    if message in _PROGRESS_STEPS:
        return str(_PROGRESS_STEPS[message])
    if tiles := _TILES_DONE.fullmatch(message):
        done, total = int(tiles[1]), int(tiles[2])
        return ngettext("%(done)d of %(total)d tile", "%(done)d of %(total)d tiles", total) % {
            "done": done,
            "total": total,
        }
    return message  # an error's own words


def job_summary(job: Job) -> str:
    """What a finished ingest did, in the researcher's language; where a running one is, or why it failed."""
    result = job.result or {}
    if job.status != Job.Status.DONE or "tasks_total" not in result:
        return _progress_text(job.message)
    created, total = int(result.get("tasks_created", 0)), int(result["tasks_total"])
    if created:
        parts = [ngettext("%(n)d task created", "%(n)d tasks created", created) % {"n": created}]
    elif total:
        parts = [gettext("already ingested: its %(n)d tasks were kept, none added") % {"n": total}]
    else:
        parts = [gettext("no task created")]
    if job.kind == "ingest_video" and "duration_seconds" in result:
        cuts = len(result.get("cuts_seconds") or [])
        parts.append(
            ngettext(
                "%(seconds).1f s of video, %(n)d shot cut", "%(seconds).1f s of video, %(n)d shot cuts", cuts
            )
            % {"seconds": float(result["duration_seconds"]), "n": cuts}
        )
        if duplicates := len(result.get("near_duplicates") or []):
            parts.append(
                ngettext(
                    "%(n)d near-duplicate of footage already here",
                    "%(n)d near-duplicates of footage already here",
                    duplicates,
                )
                % {"n": duplicates}
            )
    for reason, n in (result.get("skipped_reasons") or {}).items():
        why = _SKIP_REASONS.get(reason, reason)
        parts.append(
            ngettext("%(n)d tile skipped (%(why)s)", "%(n)d tiles skipped (%(why)s)", n)
            % {"n": n, "why": why}
        )
    if cloudy := int(result.get("tiles_cloudy") or 0):
        parts.append(
            ngettext("%(n)d tile flagged cloudy", "%(n)d tiles flagged cloudy", cloudy) % {"n": cloudy}
        )
    return pgettext("between the parts of a job summary", "; ").join(parts)


def _job_payload(job: Job) -> dict[str, Any]:
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "status_label": str(Job.Status(job.status).label),
        "progress": round(job.progress, 4),
        "message": job.message,
        "summary": job_summary(job),
        "name": " + ".join(
            name for name in (job.params.get("before_name"), job.params.get("after_name")) if name
        )
        or job.params.get("video_name")
        or "",
        "tasks_total": job.result.get("tasks_total"),
        "campaign_tasks": Task.objects.filter(campaign=job.campaign, is_gold=False).count()
        if job.campaign
        else 0,
        "url": reverse("researcher-job", args=[job.campaign.slug, job.pk]) if job.campaign else None,
    }


@login_required
@require_http_methods(["GET", "POST"])
def campaign_sources(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, role = _campaign_for(request, slug, VIEWER if request.method == "GET" else OWNER)
    is_xhr = request.headers.get("X-Requested-With") == "XMLHttpRequest"
    form_class = forms.ImageryUploadForm if campaign.kind == Campaign.Kind.IMAGERY else forms.VideoUploadForm
    form = form_class(request.POST or None, request.FILES or None)
    if request.method == "POST":
        error = None
        if form.is_valid():
            data = form.cleaned_data
            if campaign.kind == Campaign.Kind.IMAGERY:
                kind = "ingest_imagery"
                files = {"before": data["before"], **({"after": data["after"]} if data.get("after") else {})}
                params: dict[str, Any] = {
                    "tile_size_px": data["tile_size_px"],
                    "overlap_px": data["overlap_px"],
                }
                if data.get("aoi"):
                    params["aoi"] = data["aoi"]
            else:
                kind, files = "ingest_video", {"video": data["video"]}
                params = {"max_segment_seconds": data["max_segment_seconds"]}
            try:
                job = services.upload_queue(
                    campaign=campaign,
                    kind=kind,
                    files=files,
                    params=params,
                    created_by=_user(request),
                )
            except services.IngestError as exc:
                error = said(exc)
                form.add_error(None, error)
            else:
                if is_xhr:
                    return JsonResponse({"job": _job_payload(job)}, status=201)
                messages.success(request, gettext("Upload received; the tasks are being created."))
                return redirect("researcher-sources", slug=campaign.slug)
        if is_xhr:
            errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
            first = error or next((f"{k}: {v[0]}" if k != "__all__" else v[0] for k, v in errors.items()), "")
            return JsonResponse({"error": first, "errors": errors}, status=400)
    return _page(
        request,
        "researcher_sources.html",
        campaign,
        role,
        form=form,
        sources=selectors.campaign_sources(campaign),
        jobs=[_job_payload(job) for job in selectors.campaign_recent_jobs(campaign)],
        task_count=Task.objects.filter(campaign=campaign, is_gold=False).count(),
        status=400 if request.method == "POST" else 200,
    )


@json_login_required
@require_GET
def job_status(request: HttpRequest, slug: str, job_id: int) -> JsonResponse:
    campaign, _ = _campaign_for(request, slug)
    job = get_object_or_404(Job.objects.select_related("campaign"), pk=job_id, campaign=campaign)
    return JsonResponse(_job_payload(job))


# ---------------------------------------------------------------- dashboard


@login_required
@require_GET
def dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, role = _campaign_for(request, slug)
    # The chart names labels as the question set does ("Structures destroyed"), colours and all.
    names = label_names(campaign.question_set or {})
    labels = [
        (label_name(names, value), n) for value, n in verification_selectors.label_distribution(campaign)
    ]
    colours = {
        label_name(names, value): c for value, c in verification_selectors.label_colours(campaign).items()
    }
    per_hour = verification_selectors.answers_per_hour(campaign)
    retired = verification_selectors.retired_share_over_time(campaign)
    counts = verification_selectors.status_counts(campaign)
    return _page(
        request,
        "researcher_dashboard.html",
        campaign,
        role,
        counts=counts,
        task_total=sum(counts.values()),
        gold_total=selectors.gold_task_count(campaign),
        answer_count=selectors.campaign_answer_count(campaign),
        chart_answers=charts.bar_chart(
            [(h.strftime("%d %H:00"), n) for h, n in per_hour],
            title=gettext("Answers per hour"),
            colour="#0b5cad",
        ),
        chart_retired=charts.line_chart(
            [(h.strftime("%d %H:00"), share) for h, share in retired],
            title=gettext("Share of tasks done"),
            percent=True,
        ),
        chart_agreement=charts.bar_chart(
            verification_selectors.agreement_histogram(campaign), title=gettext("Agreement"), colour="#6b4fbb"
        ),
        chart_labels=charts.bar_chart(labels, title=gettext("Labels"), colours=colours),
        volunteers=verification_selectors.volunteer_table(campaign, find=request.GET.get("volunteer", "")),
    )


@login_required
@require_POST
def volunteer_block(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, _ = _campaign_for(request, slug, OWNER)
    form = forms.VolunteerBlockForm(request.POST)
    if not form.is_valid():
        return HttpResponse("Choose a volunteer.", status=400, content_type="text/plain")
    volunteer = get_object_or_404(
        Volunteer, public_id=form.cleaned_data["volunteer"], answers__campaign=campaign
    )
    blocked = form.cleaned_data["blocked"]
    verification_services.volunteer_block_set(
        campaign=campaign,
        volunteer=volunteer,
        blocked=blocked,
        by=_user(request),
    )
    messages.success(
        request,
        (
            gettext("%(volunteer)s blocked; the consensus was recomputed.")
            if blocked
            else gettext("%(volunteer)s unblocked; the consensus was recomputed.")
        )
        % {"volunteer": volunteer.pseudonym},
    )
    return redirect("researcher-dashboard", slug=campaign.slug)


# ---------------------------------------------------------------- map


@login_required
@require_GET
def campaign_map(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, role = _campaign_for(request, slug)
    overview_task = Task.objects.filter(campaign=campaign, media__has_key="overview").first()
    overview = overview_task.media if overview_task else {}
    return _page(
        request,
        "researcher_map.html",
        campaign,
        role,
        map_config={
            "geojson": reverse("researcher-map-data", args=[campaign.slug]),
            "overview": media_url(overview.get("overview")),
            "overview_after": media_url(overview.get("overview_after")),
            "bounds": verification_selectors.campaign_overview_bounds(campaign),
            "colours": verification_selectors.label_colours(campaign),
        },
        label_choices=forms.primary_choices(campaign),
        statuses=Task.Status.choices,
    )


@json_login_required
@require_GET
@gzip_page  # a tile's footprint and figures, 40,000 times: 15.7 MB plain (benchmarks/researcher_pages.py)
def map_data(request: HttpRequest, slug: str) -> JsonResponse:
    campaign, _ = _campaign_for(request, slug)
    # One reverse for the campaign, not one per task (40,000 reverses took 1.6 s).
    first = reverse("researcher-task", args=[campaign.slug, 1])
    prefix, suffix = first.rsplit("/1/", 1)
    return JsonResponse(
        verification_selectors.campaign_geojson(
            campaign, task_url=lambda task_id: f"{prefix}/{task_id}/{suffix}"
        )
    )


# ---------------------------------------------------------------- review


REVIEW_PAGE_SIZE = 100


@login_required
@require_GET
def review_queue(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, role = _campaign_for(request, slug)
    # The crowd labels a reviewer can narrow the queue to: the primary question's choices.
    labels = [value for value, _ in forms.primary_choices(campaign)]
    label = request.GET.get("label") or None
    if label not in labels:
        label = None
    total = verification_selectors.review_queue_count(campaign, label=label)
    pages = max(1, -(-total // REVIEW_PAGE_SIZE))
    try:
        page = min(max(1, int(request.GET.get("page", "1"))), pages)
    except ValueError:
        page = 1
    offset = (page - 1) * REVIEW_PAGE_SIZE
    rows = verification_selectors.review_queue(campaign, limit=REVIEW_PAGE_SIZE, offset=offset, label=label)
    return _page(
        request,
        "researcher_review.html",
        campaign,
        role,
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        first=offset + 1 if rows else 0,
        last=offset + len(rows),
        labels=labels,
        label=label or "",
    )


def _task_page(
    request: HttpRequest,
    campaign: Campaign,
    role: str,
    task: Task,
    *,
    decision_form: forms.DecisionForm | None = None,
    gold_form: forms.GoldForm | None = None,
    status: int = 200,
) -> HttpResponse:
    decisions = verification_selectors.task_decisions(task)
    consensus = getattr(task, "consensus", None)
    distribution = sorted((consensus.distribution or {}).items(), key=lambda kv: -kv[1]) if consensus else []
    return _page(
        request,
        "researcher_task.html",
        campaign,
        role,
        task=task,
        media=task_media_urls(task),
        answers=verification_selectors.task_answers(task),
        consensus=consensus,
        distribution=distribution,
        decisions=decisions,
        decision_form=decision_form
        or forms.DecisionForm(campaign=campaign, initial={"label": consensus.label if consensus else None}),
        gold_form=gold_form
        or forms.GoldForm(campaign=campaign, prefix="gold", initial=_gold_initial(task, consensus)),
        next_url=_next_in_queue(campaign, task),
        provenance=selectors.source_provenance(task.source),
        after_provenance=selectors.source_provenance(task.after_source) if task.after_source else None,
        near_duplicates=selectors.segment_near_duplicates(task) if task.kind == Task.Kind.SEGMENT else [],
        status=status,
    )


def _gold_initial(task: Task, consensus: Any) -> dict[str, Any]:
    if task.is_gold and task.gold_answer:
        value = task.gold_answer.get(task.campaign.question_set["primary"])
        label = value[0] if isinstance(value, list) and value else value
        return {"label": label, "explanation": task.gold_explanation}
    return {"label": consensus.label if consensus else None}


# ---------------------------------------------------------------- sampled expert audit


@login_required
@require_GET
def audit(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, role = _campaign_for(request, slug)
    return _page(
        request,
        "researcher_audit.html",
        campaign,
        role,
        report=verification_selectors.audit_report(campaign),
        next_item=verification_selectors.audit_next(campaign),
        draw_form=forms.AuditDrawForm(),
    )


@login_required
@require_POST
def audit_draw(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, _role = _campaign_for(request, slug, REVIEWER)
    form = forms.AuditDrawForm(request.POST)
    if form.is_valid():
        try:
            items = verification_services.audit_draw(
                campaign=campaign, size=form.cleaned_data["size"], by=_user(request)
            )
        except AnswerError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(
                request,
                ngettext("%(n)d task drawn for the audit.", "%(n)d tasks drawn for the audit.", len(items))
                % {"n": len(items)},
            )
    else:
        messages.error(request, "; ".join(str(e) for errors in form.errors.values() for e in errors))
    return redirect("researcher-audit", slug=campaign.slug)


@login_required
@require_http_methods(["GET", "POST"])
def audit_item(request: HttpRequest, slug: str, task_id: int) -> HttpResponse:
    """One drawn task, answered blind: the page shows the task and the question, never the crowd's label."""
    campaign, role = _campaign_for(request, slug, REVIEWER)
    item = get_object_or_404(verification_selectors.audit_items(campaign), task_id=task_id)
    form = forms.AuditAnswerForm(request.POST or None, campaign=campaign)
    status = 200
    if request.method == "POST" and item.audited_at is None:
        if form.is_valid():
            try:
                verification_services.audit_answer(
                    item=item,
                    label=form.cleaned_data["label"],
                    note=form.cleaned_data["note"],
                    by=_user(request),
                )
            except AnswerError as exc:
                form.add_error(None, exc.message)
            else:
                following = verification_selectors.audit_next(campaign)
                if following is None:
                    messages.success(request, gettext("Audit sample answered."))
                    return redirect("researcher-audit", slug=campaign.slug)
                return redirect("researcher-audit-item", slug=campaign.slug, task_id=following.task_id)
        status = 400
    elif request.method == "POST":
        status = 409
    task = _task_of(campaign, task_id)
    return _page(
        request,
        "researcher_audit_item.html",
        campaign,
        role,
        status=status,
        item=item,
        task=task,
        media=task_media_urls(task),
        question=campaign.question_set,
        form=form,
        progress=verification_selectors.audit_progress(campaign),
    )


def _next_in_queue(campaign: Campaign, task: Task) -> str | None:
    for row in verification_selectors.review_queue(campaign, limit=50):
        if row["task_id"] != task.pk and row["status"] != Task.Status.ADJUDICATED:
            return reverse("researcher-task", args=[campaign.slug, row["task_id"]])
    return None


def _task_of(campaign: Campaign, task_id: int) -> Task:
    return get_object_or_404(
        Task.objects.select_related("consensus", "source", "after_source", "campaign"),
        pk=task_id,
        campaign=campaign,
    )


@login_required
@require_GET
def task_detail(request: HttpRequest, slug: str, task_id: int) -> HttpResponse:
    campaign, role = _campaign_for(request, slug)
    return _task_page(request, campaign, role, _task_of(campaign, task_id))


@login_required
@require_POST
def task_decide(request: HttpRequest, slug: str, task_id: int) -> HttpResponse:
    campaign, role = _campaign_for(request, slug, REVIEWER)
    task = _task_of(campaign, task_id)
    form = forms.DecisionForm(request.POST, campaign=campaign)
    if form.is_valid():
        try:
            verification_services.decision_record(
                task=task,
                reviewer=_user(request),
                label=form.cleaned_data["label"],
                note=form.cleaned_data["note"],
            )
        except AnswerError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request,
                gettext("Task %(task)s adjudicated as %(label)s.")
                % {"task": task.pk, "label": form.cleaned_data["label"]},
            )
            return redirect("researcher-task", slug=campaign.slug, task_id=task.pk)
    return _task_page(request, campaign, role, task, decision_form=form, status=400)


@login_required
@require_POST
def task_gold(request: HttpRequest, slug: str, task_id: int) -> HttpResponse:
    campaign, role = _campaign_for(request, slug, REVIEWER)
    task = _task_of(campaign, task_id)
    form = forms.GoldForm(request.POST, campaign=campaign, prefix="gold")
    if form.is_valid():
        try:
            services.task_mark_gold(
                task=task,
                answer=answer_for_label(campaign.question_set, form.cleaned_data["label"]),
                explanation=form.cleaned_data["explanation"],
                by=_user(request),
            )
        except AnswerError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, gettext("Task %(task)s is now a gold task.") % {"task": task.pk})
            return redirect("researcher-task", slug=campaign.slug, task_id=task.pk)
    return _task_page(request, campaign, role, task, gold_form=form, status=400)


@login_required
@require_http_methods(["GET", "POST"])
def gold_import(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, role = _campaign_for(request, slug, REVIEWER)
    form = forms.GoldCsvForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                count = services.gold_import_csv(
                    campaign=campaign,
                    csv_text=form.cleaned_data["csv_file"],
                    by=_user(request),
                )
            except services.IngestError as exc:
                form.add_error(None, said(exc))
            else:
                messages.success(
                    request,
                    ngettext("%(n)d gold task imported.", "%(n)d gold tasks imported.", count) % {"n": count},
                )
                return redirect("researcher-gold", slug=campaign.slug)
    gold = Task.objects.filter(campaign=campaign, is_gold=True).order_by("id")
    return _page(request, "researcher_gold.html", campaign, role, form=form, gold=gold, status=status)


# ---------------------------------------------------------------- evidence sets


@login_required
@require_http_methods(["GET", "POST"])
def evidence_list(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, role = _campaign_for(request, slug, VIEWER if request.method == "GET" else REVIEWER)
    form = forms.EvidenceSetForm(request.POST or None, campaign=campaign)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                evidence_set = verification_services.evidence_set_create(
                    campaign=campaign,
                    name=form.cleaned_data["name"],
                    description=form.cleaned_data["description"],
                    filters=form.filters(),
                    by=_user(request),
                )
            except verification_services.EvidenceSetError as exc:
                form.add_error(None, said(exc))
            else:
                return redirect("researcher-evidence", slug=campaign.slug, set_id=evidence_set.pk)
    sets = EvidenceSet.objects.filter(campaign=campaign).order_by("name", "-version")
    return _page(
        request, "researcher_evidence_list.html", campaign, role, form=form, sets=sets, status=status
    )


@login_required
@require_http_methods(["GET", "POST"])
def evidence_detail(request: HttpRequest, slug: str, set_id: int) -> HttpResponse:
    campaign, role = _campaign_for(request, slug, VIEWER if request.method == "GET" else REVIEWER)
    evidence_set = get_object_or_404(EvidenceSet, pk=set_id, campaign=campaign)
    form = forms.EvidenceEditForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            action, ids = form.cleaned_data["action"], form.cleaned_data["task_ids"]
            user = _user(request)
            try:
                if action == "add":
                    n = verification_services.evidence_set_add(
                        evidence_set=evidence_set, task_ids=ids, by=user
                    )
                    messages.success(
                        request, ngettext("%(n)d task added.", "%(n)d tasks added.", n) % {"n": n}
                    )
                elif action == "remove":
                    n = verification_services.evidence_set_remove(
                        evidence_set=evidence_set, task_ids=ids, by=user
                    )
                    messages.success(
                        request, ngettext("%(n)d task removed.", "%(n)d tasks removed.", n) % {"n": n}
                    )
                elif action == "freeze":
                    verification_services.evidence_set_freeze(evidence_set=evidence_set, by=user)
                    messages.success(request, gettext("Frozen: this version will never change."))
                else:
                    derived = verification_services.evidence_set_derive(evidence_set=evidence_set, by=user)
                    messages.success(
                        request,
                        gettext("Version %(new)s created from version %(old)s.")
                        % {"new": derived.version, "old": evidence_set.version},
                    )
                    return redirect("researcher-evidence", slug=campaign.slug, set_id=derived.pk)
            except (verification_services.EvidenceSetError, verification_services.EvidenceSetFrozen) as exc:
                form.add_error(None, said(exc))
            else:
                return redirect("researcher-evidence", slug=campaign.slug, set_id=evidence_set.pk)
    versions = EvidenceSet.objects.filter(campaign=campaign, name=evidence_set.name).order_by("version")
    filters = {
        key: "a polygon" if key == "aoi" else ", ".join(value) if isinstance(value, list) else value
        for key, value in evidence_set.filters.items()
    }
    return _page(
        request,
        "researcher_evidence.html",
        campaign,
        role,
        evidence_set=evidence_set,
        rows=verification_selectors.evidence_set_rows(evidence_set),
        form=form,
        versions=versions,
        filters=filters,
        status=status,
    )


# ---------------------------------------------------------------- staged campaigns


@login_required
@require_http_methods(["GET", "POST"])
def campaign_promote(request: HttpRequest, slug: str) -> HttpResponse:
    campaign, role = _campaign_for(request, slug, OWNER)
    form = forms.PromoteForm(request.POST or None, campaign=campaign, user=request.user)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            target = form.cleaned_data["target"]
            if selectors.role_of(user=request.user, campaign=target) != OWNER:
                raise PermissionDenied("You must own the follow-up campaign")
            try:
                summary = services.campaign_promote(
                    source_campaign=campaign,
                    target_campaign=target,
                    rule=form.filters(),
                    by=_user(request),
                )
            except services.IngestError as exc:
                form.add_error(None, said(exc))
            else:
                messages.success(
                    request,
                    ngettext(
                        "%(matching)d task matches; %(created)d new tasks in %(target)s.",
                        "%(matching)d tasks match; %(created)d new tasks in %(target)s.",
                        summary["matching"],
                    )
                    % {
                        "matching": summary["matching"],
                        "created": summary["tasks_created"],
                        "target": target.title,
                    },
                )
                return redirect("researcher-promote", slug=campaign.slug)
    return _page(
        request,
        "researcher_promote.html",
        campaign,
        role,
        form=form,
        stages=campaign.stages.all(),
        status=status,
    )
