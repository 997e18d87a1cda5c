"""Volunteer pages without a browser: French, the tutorial record, the graphic opt-in, the catalogue of strings."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from tasks.models import Campaign, Volunteer
from tests.factories import CampaignFactory, TaskFactory

pytestmark = pytest.mark.django_db


def test_pages_are_in_french_when_chosen(client: Client) -> None:
    CampaignFactory(title="Darfour")
    response = client.post("/i18n/setlang/", {"language": "fr", "next": "/"})
    assert response.status_code == 302
    page = client.get("/").content.decode()
    assert "Campagnes en cours" in page and 'lang="fr"' in page


def test_the_classify_page_hands_its_strings_to_the_script_translated(client: Client) -> None:
    campaign = CampaignFactory()
    client.post("/i18n/setlang/", {"language": "fr", "next": "/"})
    page = client.get(f"/campaigns/{campaign.slug}/classify/").content.decode()
    catalogue = json.loads(
        re.search(r'id="classify-strings" type="application/json">(.*?)</script>', page, re.S)[1]
    )
    assert catalogue["correct"].startswith("Bien vu")
    assert "<script>" not in page  # the Content-Security-Policy allows no inline script


def test_starting_from_the_campaign_page_records_the_tutorial_and_the_opt_in(client: Client) -> None:
    campaign = CampaignFactory(kind=Campaign.Kind.VIDEO, slug="footage")
    TaskFactory(campaign=campaign)
    page = client.get("/campaigns/footage/").content.decode()
    assert "I have read the tutorial" in page and "graphic_opt_in" in page
    response = client.post("/campaigns/footage/", {"graphic_opt_in": "on"})
    assert response.status_code == 302 and response["Location"] == "/campaigns/footage/classify/"
    volunteer = Volunteer.objects.get()
    assert volunteer.tutorial_done == ["footage"] and volunteer.graphic_opt_in
    assert "Start classifying" in client.get("/campaigns/footage/").content.decode()
    body = client.post("/api/v1/campaigns/footage/next-task", content_type="application/json").json()
    assert body["graphic_opt_in"] is True and body["graphic"] is False
