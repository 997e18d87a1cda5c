"""Views that render pages. They call selectors and services; the rules live there."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from tasks import selectors, services
from tasks.models import Campaign

# Only media that volunteers see is served, with a fixed, safe content type; nothing else under MEDIA_ROOT.
SAFE_MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
}


def home(request: HttpRequest) -> HttpResponse:
    campaigns = list(selectors.campaigns_for_home())
    for campaign in campaigns:
        total = campaign.task_count or 0  # type: ignore[attr-defined]
        campaign.percent_done = round(100 * (campaign.retired_count or 0) / total) if total else 0  # type: ignore[attr-defined]
    return render(request, "frontend/home.html", {"campaigns": campaigns})


def _visible_campaign(request: HttpRequest, slug: str) -> Campaign:
    campaign = get_object_or_404(Campaign, slug=slug)
    if (
        campaign.status != Campaign.Status.LIVE
        and selectors.role_of(user=request.user, campaign=campaign) is None
    ):
        raise Http404("No such campaign")
    return campaign


def campaign_detail(request: HttpRequest, slug: str) -> HttpResponse:
    campaign = _visible_campaign(request, slug)
    primary = campaign.question_set["primary"]
    primary_question = next(q for q in campaign.question_set["questions"] if q["key"] == primary)
    return render(
        request,
        "frontend/campaign.html",
        {"campaign": campaign, "primary_question": primary_question, "tutorial": campaign.tutorial or []},
    )


def classify(request: HttpRequest, slug: str) -> HttpResponse:
    campaign = _visible_campaign(request, slug)
    return render(request, "frontend/classify.html", {"campaign": campaign})


class RegisterForm(UserCreationForm):
    """Registration without an email address: volunteers may be at risk."""

    class Meta(UserCreationForm.Meta):
        fields = ("username",)


@require_http_methods(["GET", "POST"])
def register(request: HttpRequest) -> HttpResponse:
    form = RegisterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        anonymous = services.volunteer_for_request(request, create=False)
        login(request, user)
        if anonymous is not None:
            services.volunteer_register(volunteer=anonymous, user=user)
            request.session["volunteer"] = str(anonymous.public_id)
        return redirect("home")
    return render(request, "registration/register.html", {"form": form})


def media(request: HttpRequest, path: str) -> FileResponse:
    """Serve local media (laptop shape). Production serves media from S3 with presigned URLs."""
    suffix = Path(path).suffix.lower()
    if suffix not in SAFE_MEDIA_TYPES or ".." in Path(path).parts or path.startswith("sources/"):
        raise Http404("No such media")
    root = Path(settings.MEDIA_ROOT).resolve()
    full = (root / path).resolve()
    if root not in full.parents or not full.is_file():
        raise Http404("No such media")
    response = FileResponse(open(full, "rb"), content_type=SAFE_MEDIA_TYPES[suffix])  # noqa: SIM115 (closed by Django)
    response["Cache-Control"] = "public, max-age=86400, immutable"
    response["X-Content-Type-Options"] = "nosniff"
    return response
