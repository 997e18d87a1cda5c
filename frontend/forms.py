"""Forms of the researcher workspace: they parse and check what a person typed; services apply the rules."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _

from frontend.i18n import said
from tasks.models import Campaign, CampaignMembership, Task
from tasks.questions import UNSURE, QuestionSetError, primary_labels, validate_question_set

AOI_MAX_BYTES = 5 * 1024 * 1024
CSV_MAX_BYTES = 5 * 1024 * 1024


def primary_choices(campaign: Campaign) -> list[tuple[str, str]]:
    """(value, label) of the primary question's consensus labels, as a reviewer picks them (for a multiple
    choice, every combination of its options)."""
    return primary_labels(campaign.question_set)


def _read_json_upload(upload: Any, what: str) -> Any:
    if upload.size > AOI_MAX_BYTES:
        raise forms.ValidationError(_("the %(what)s is larger than 5 MB") % {"what": what})
    try:
        return json.loads(b"".join(upload.chunks()).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise forms.ValidationError(
            _("the %(what)s is not valid JSON: %(error)s") % {"what": what, "error": exc}
        ) from exc


def _check_aoi(value: Any) -> Any:
    from tasks import imagery

    try:
        imagery.parse_aoi(value)
    except imagery.ImageryError as exc:
        raise forms.ValidationError(said(exc)) from exc
    return value


class CampaignForm(forms.Form):
    """Set-up of a campaign; the slug, kind and earlier stage are chosen once, at creation."""

    slug = forms.SlugField(
        max_length=64,
        label=_("Slug"),
        help_text=_("Lowercase letters, digits and hyphens; part of the address."),
    )
    title = forms.CharField(max_length=200, label=_("Title"))
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False, label=_("Description")
    )
    kind = forms.ChoiceField(choices=Campaign.Kind.choices, label=_("Kind"))
    parent = forms.ModelChoiceField(
        queryset=Campaign.objects.none(),
        required=False,
        label=_("Follow-up stage of"),
        help_text=_("Tasks of the earlier stage can then be promoted into this campaign."),
    )
    status = forms.ChoiceField(
        choices=Campaign.Status.choices, initial=Campaign.Status.DRAFT, label=_("Status")
    )
    question_set = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "mono"}),
        required=False,
        label=_("Question set"),
        help_text=_("JSON; leave empty for the standard question set of the campaign's kind."),
    )
    min_answers = forms.IntegerField(min_value=1, max_value=100, initial=3, label=_("Minimum answers"))
    max_answers = forms.IntegerField(min_value=1, max_value=200, initial=10, label=_("Maximum answers"))
    retirement_confidence = forms.FloatField(
        min_value=0.51,
        max_value=1.0,
        initial=0.95,
        label=_("Retirement confidence"),
        help_text=_("A task retires once its consensus is at least this likely to be right."),
    )
    gold_share = forms.FloatField(
        min_value=0,
        max_value=1,
        initial=0.1,
        label=_("Gold share"),
        help_text=_("Share of gold tasks (0-1)."),
    )
    lease_seconds = forms.IntegerField(
        min_value=30,
        max_value=86400,
        initial=600,
        label=_("Lease seconds"),
        help_text=_("How long a volunteer holds a task."),
    )

    def __init__(self, *args: Any, user: Any, campaign: Campaign | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.campaign = campaign
        if campaign is not None:
            for name in ("slug", "kind", "parent"):
                del self.fields[name]
        else:
            from tasks.selectors import campaigns_owned_by

            self.fields["parent"].queryset = campaigns_owned_by(user)  # type: ignore[attr-defined]

    def clean_question_set(self) -> dict[str, Any] | None:
        text = self.cleaned_data["question_set"].strip()
        if not text:
            if self.campaign is not None:
                raise forms.ValidationError(_("a campaign needs a question set"))
            return None
        try:
            question_set = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(_("not valid JSON: %(error)s") % {"error": exc}) from exc
        try:
            return validate_question_set(question_set)
        except QuestionSetError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_slug(self) -> str:
        slug: str = self.cleaned_data["slug"]
        if Campaign.objects.filter(slug=slug).exists():
            raise forms.ValidationError(_("a campaign with this slug already exists"))
        return slug

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        low, high = data.get("min_answers"), data.get("max_answers")
        if low is not None and high is not None and high < low:
            self.add_error("max_answers", _("must be at least the minimum"))
        parent = data.get("parent")
        if parent is not None and data.get("kind") and parent.kind != data["kind"]:
            self.add_error("parent", _("an earlier stage must be of the same kind"))
        return data


def _check_size(upload: Any) -> Any:
    if upload is not None and upload.size > settings.CORROBORATE_MAX_UPLOAD_BYTES:
        raise forms.ValidationError(_("the file is larger than this installation accepts"))
    return upload


class ImageryUploadForm(forms.Form):
    before = forms.FileField(label=_("GeoTIFF (before, or the only date)"))
    after = forms.FileField(label=_("GeoTIFF after (optional)"), required=False)
    aoi = forms.FileField(label=_("Area of interest, GeoJSON (optional)"), required=False)
    tile_size_px = forms.IntegerField(min_value=64, max_value=2048, initial=256, label=_("Tile size (px)"))
    overlap_px = forms.IntegerField(min_value=0, max_value=512, initial=32, label=_("Overlap (px)"))

    def clean_before(self) -> Any:
        return _check_size(self.cleaned_data["before"])

    def clean_after(self) -> Any:
        return _check_size(self.cleaned_data.get("after"))

    def clean_aoi(self) -> Any:
        upload = self.cleaned_data.get("aoi")
        if not upload:
            return None
        return _check_aoi(_read_json_upload(upload, str(_("area of interest"))))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        size, overlap = data.get("tile_size_px"), data.get("overlap_px")
        if size is not None and overlap is not None and overlap >= size:
            self.add_error("overlap_px", _("must be smaller than the tile size"))
        return data


class VideoUploadForm(forms.Form):
    video = forms.FileField(label=_("Video"))
    max_segment_seconds = forms.FloatField(
        min_value=1, max_value=600, initial=10, label=_("Longest segment (s)")
    )

    def clean_video(self) -> Any:
        return _check_size(self.cleaned_data["video"])


class MemberForm(forms.Form):
    REMOVE = "remove"

    username = forms.CharField(max_length=150, label=_("Username"))
    role = forms.ChoiceField(
        choices=[*CampaignMembership.Role.choices, (REMOVE, _("Remove from campaign"))], label=_("Role")
    )

    def clean_username(self) -> Any:
        user = get_user_model().objects.filter(username=self.cleaned_data["username"].strip()).first()
        if user is None:
            raise forms.ValidationError(_("no account with this username"))
        return user


class DecisionForm(forms.Form):
    label = forms.ChoiceField(label=_("Final label"))
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), label=_("Note"), help_text=_("Required: why this label.")
    )

    def __init__(self, *args: Any, campaign: Campaign, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["label"].choices = primary_choices(campaign)  # type: ignore[attr-defined]

    def clean_note(self) -> str:
        note: str = self.cleaned_data["note"].strip()
        if not note:
            raise forms.ValidationError(_("a note explaining the decision is required"))
        return note


class AuditDrawForm(forms.Form):
    size = forms.IntegerField(label=_("Tasks to draw"), min_value=1, max_value=500, initial=50)


class AuditAnswerForm(forms.Form):
    label = forms.ChoiceField(label=_("Your answer"), widget=forms.RadioSelect)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, label=_("Note"))

    def __init__(self, *args: Any, campaign: Campaign, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = primary_choices(campaign)
        if UNSURE not in {value for value, _label in choices}:
            choices.append((UNSURE, str(_("Unsure"))))
        self.fields["label"].choices = choices  # type: ignore[attr-defined]


class GoldForm(forms.Form):
    label = forms.ChoiceField(label=_("Expert answer"))
    explanation = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), label=_("Explanation"), help_text=_("Shown to volunteers.")
    )

    def __init__(self, *args: Any, campaign: Campaign, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["label"].choices = primary_choices(campaign)  # type: ignore[attr-defined]


class GoldCsvForm(forms.Form):
    csv_file = forms.FileField(label=_("CSV file"), help_text=_("Columns: task_id,label,explanation"))

    def clean_csv_file(self) -> str:
        upload = self.cleaned_data["csv_file"]
        if upload.size > CSV_MAX_BYTES:
            raise forms.ValidationError(_("the CSV is larger than 5 MB"))
        try:
            return b"".join(upload.chunks()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError(_("the CSV must be UTF-8 text")) from exc


class TaskFilterForm(forms.Form):
    """Filters shared by evidence sets and promotion rules (see verification.selectors.filters_normalise)."""

    labels = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple, label=_("Labels"))
    min_confidence = forms.FloatField(
        min_value=0, max_value=1, required=False, label=_("Confidence at least")
    )
    statuses = forms.MultipleChoiceField(
        choices=Task.Status.choices, required=False, widget=forms.CheckboxSelectMultiple, label=_("Status")
    )
    aoi = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
        required=False,
        label=_("Inside area (GeoJSON polygon)"),
    )

    def __init__(self, *args: Any, campaign: Campaign, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["labels"].choices = primary_choices(campaign)  # type: ignore[attr-defined]

    def clean_aoi(self) -> Any:
        text = self.cleaned_data["aoi"].strip()
        if not text:
            return None
        try:
            return _check_aoi(json.loads(text))
        except ValueError as exc:
            if isinstance(exc, forms.ValidationError):
                raise
            raise forms.ValidationError(_("not valid JSON: %(error)s") % {"error": exc}) from exc

    def filters(self) -> dict[str, Any]:
        data = self.cleaned_data
        filters: dict[str, Any] = {}
        if data.get("labels"):
            filters["labels"] = list(data["labels"])
        if data.get("min_confidence") is not None:
            filters["min_confidence"] = data["min_confidence"]
        if data.get("statuses"):
            filters["statuses"] = list(data["statuses"])
        if data.get("aoi"):
            filters["aoi"] = data["aoi"]
        return filters


class EvidenceSetForm(TaskFilterForm):
    name = forms.CharField(max_length=120, label=_("Name"))
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, label=_("Description")
    )
    field_order = ["name", "description", "labels", "min_confidence", "statuses", "aoi"]


class EvidenceEditForm(forms.Form):
    action = forms.ChoiceField(
        choices=[
            ("add", _("Add")),
            ("remove", _("Remove")),
            ("freeze", _("Freeze")),
            ("derive", _("Derive new version")),
        ]
    )
    task_ids = forms.CharField(
        required=False, label=_("Task ids"), help_text=_("Separated by commas or spaces.")
    )

    def clean_task_ids(self) -> list[int]:
        raw = self.cleaned_data["task_ids"].replace(",", " ").split()
        if not all(part.isdigit() for part in raw):
            raise forms.ValidationError(_("task ids are numbers"))
        return [int(part) for part in raw]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("action") in ("add", "remove") and not data.get("task_ids"):
            self.add_error("task_ids", _("name at least one task"))
        return data


class PromoteForm(TaskFilterForm):
    target = forms.ModelChoiceField(queryset=Campaign.objects.none(), label=_("Follow-up campaign"))
    field_order = ["target", "labels", "min_confidence", "statuses", "aoi"]

    def __init__(self, *args: Any, campaign: Campaign, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, campaign=campaign, **kwargs)
        from tasks.selectors import campaigns_owned_by

        self.fields["target"].queryset = (  # type: ignore[attr-defined]
            campaigns_owned_by(user).filter(kind=campaign.kind).exclude(pk=campaign.pk)
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors and not self.filters():
            raise forms.ValidationError(
                _("choose at least one condition (a label, a confidence, a status or an area)")
            )
        return data


class VolunteerBlockForm(forms.Form):
    volunteer = forms.UUIDField()
    blocked = forms.BooleanField(required=False)
