"""factory_boy factories for the core models."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile

from tasks.models import Campaign, CampaignMembership, Source, Task, Volunteer
from tasks.questions import IMAGERY_QUESTION_SET


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct-horse-battery")


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    slug = factory.Sequence(lambda n: f"campaign-{n}")
    title = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    kind = Campaign.Kind.IMAGERY
    status = Campaign.Status.LIVE
    question_set = factory.LazyFunction(lambda: IMAGERY_QUESTION_SET)
    min_answers = 3
    max_answers = 5


def _source_file(o: Any) -> ContentFile:
    return ContentFile(b"fake original " + str(uuid.uuid4()).encode(), name="original.tif")


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source

    campaign = factory.SubFactory(CampaignFactory)
    kind = Source.Kind.RASTER
    file = factory.LazyAttribute(_source_file)
    original_name = "original.tif"
    sha256 = factory.LazyFunction(lambda: hashlib.sha256(uuid.uuid4().bytes).hexdigest())
    size_bytes = 100
    ready = True


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    campaign = factory.SubFactory(CampaignFactory)
    source = factory.SubFactory(SourceFactory, campaign=factory.SelfAttribute("..campaign"))
    key = factory.Sequence(lambda n: f"tile:test:{n}")
    kind = Task.Kind.TILE
    window = factory.LazyFunction(lambda: {"col_off": 0, "row_off": 0, "width": 256, "height": 256})
    bbox = factory.LazyFunction(lambda: [23.0, 13.0, 23.01, 13.01])
    media = factory.LazyFunction(dict)


class VolunteerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Volunteer


def grant(campaign: Campaign, user: Any, role: str) -> CampaignMembership:
    return CampaignMembership.objects.create(campaign=campaign, user=user, role=role)
