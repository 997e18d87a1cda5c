"""Views that render pages. They call selectors and services; the rules live there."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from tasks import selectors, services
from tasks.media import task_media_urls
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
    """The campaign's tutorial and field guide. Posting the form records the tutorial as done, then starts."""
    campaign = _visible_campaign(request, slug)
    if request.method == "POST":
        volunteer = services.volunteer_for_request(request, create=True)
        assert volunteer is not None
        services.volunteer_tutorial_done(volunteer=volunteer, campaign=campaign)
        if campaign.kind == Campaign.Kind.VIDEO:
            services.volunteer_set_graphic_opt_in(
                volunteer=volunteer, opt_in=request.POST.get("graphic_opt_in") == "on"
            )
        return redirect("classify", slug=campaign.slug)
    primary = campaign.question_set["primary"]
    primary_question = next(q for q in campaign.question_set["questions"] if q["key"] == primary)
    examples = selectors.field_guide_examples(campaign)
    step_tasks = selectors.tutorial_tasks(campaign)
    # A step is illustrated by a task ("task": id) or by the gold example of an answer ("example": value).
    tutorial = []
    for step in campaign.tutorial or []:
        if not isinstance(step, dict):
            continue
        task = step_tasks.get(step.get("task")) or examples.get(step.get("example"))  # type: ignore[arg-type]
        tutorial.append({**step, "media": task_media_urls(task) if task is not None else {}})
    guide = [
        {
            **choice,
            "shortcut": "u" if choice["value"] == "unsure" else str(index),
            "example": task_media_urls(examples[choice["value"]]) if choice["value"] in examples else {},
            "explanation": examples[choice["value"]].gold_explanation if choice["value"] in examples else "",
        }
        for index, choice in enumerate(primary_question.get("choices", []), start=1)
    ]
    volunteer = services.volunteer_for_request(request, create=False)
    return render(
        request,
        "frontend/campaign.html",
        {
            "campaign": campaign,
            "primary_question": primary_question,
            "tutorial": tutorial,
            "guide": guide,
            "tutorial_done": volunteer is not None and campaign.slug in (volunteer.tutorial_done or []),
            "graphic_opt_in": volunteer is not None and volunteer.graphic_opt_in,
        },
    )


# Strings the classify script shows, translated here and handed over with json_script (no inline script).
CLASSIFY_STRINGS = {
    "before": _("Before"),
    "after": _("After"),
    "image": _("Image"),
    "keyframe": _("Keyframe at %(time)s s"),
    "progress": _("Today: %(today)s answered · here: %(here)s · campaign %(percent)s done"),
    "lease": _("Reserved for you for %(time)s"),
    "lease_lost": _("Your reservation expired; you can still answer if the task needs it."),
    "load_failed": _("Could not load a task; retrying shortly."),
    "send_failed": _("Could not send your answer; it will be retried."),
    "slow_down": _("You are going very fast; please wait a few seconds."),
    "joining": _("Many people are joining right now; your browser is doing a moment of work to let you in…"),
    "invalid": _("Please check your answer."),
    "correct": _("Well spotted! That matches the experts."),
    "incorrect": _("Not quite: this one was a practice task."),
    "expert_answer": _("Experts answered: %(label)s."),
    "practice": _("This was a practice task with a known answer."),
    "unsure_fine": _("You answered Unsure: that is always fine."),
    "graphic_warning": _(
        "This segment may contain graphic content. It is blurred until you choose to see it."
    ),
    "graphic_notice": _("This segment may contain graphic content."),
    "show": _("Show"),
    "marks": _("%(count)s mark(s)"),
    "mark_hint": _("Tap the image to mark; tap Undo to remove the last mark."),
    "break": _(
        "You have looked at several graphic items in a row. It is fine to take a break, "
        "or to switch to another campaign."
    ),
    "play_segment": _("Play segment"),
    "full_size": _("Keyframes at full size (for reverse image search):"),
    "seen_before": _(
        "Seen before: this segment matches %(source)s at %(start)s–%(end)s s, ingested earlier."
    ),
    "segment": _("Segment %(start)s–%(end)s s"),
    "latitude": _("Latitude"),
    "longitude": _("Longitude"),
}


def classify(request: HttpRequest, slug: str) -> HttpResponse:
    campaign = _visible_campaign(request, slug)
    return render(
        request,
        "frontend/classify.html",
        {"campaign": campaign, "strings": {k: str(v) for k, v in CLASSIFY_STRINGS.items()}},
    )


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
