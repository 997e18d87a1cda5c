"""Error pages: in the site's layout and language, saying what happened and what to do, never Django's bare text."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory
from django.utils import translation
from django.views.defaults import server_error

from tasks.models import CampaignMembership
from tests.factories import CampaignFactory, grant


@pytest.mark.django_db
def test_a_missing_page_says_so_in_the_site_layout_with_a_way_back(client: Client) -> None:
    response = client.get("/campaigns/no-such-campaign/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "<h1>Page not found</h1>" in page and "campaign may have ended" in page
    assert 'class="brand"' in page and 'href="/"' in page  # the site's header and a link home
    client.post("/i18n/setlang/", {"language": "fr", "next": "/"})
    page = client.get("/campaigns/no-such-campaign/").content.decode()
    assert "Page introuvable" in page and "Voir les campagnes en cours" in page and 'lang="fr"' in page


@pytest.mark.django_db
def test_an_unknown_api_address_answers_in_the_apis_json_and_a_missing_slash_still_redirects(
    client: Client,
) -> None:
    response = client.post("/api/v1/tasks/12/answer", {}, content_type="application/json")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}
    assert client.get("/api/v1/no-such-thing").json() == {"detail": "Not found."}
    redirect = client.get("/api/v1/campaigns")
    assert redirect.status_code == 301 and redirect["Location"] == "/api/v1/campaigns/"


@pytest.mark.django_db
def test_a_page_the_account_may_not_open_says_why(client: Client) -> None:
    campaign = CampaignFactory(title="Darfur 2023")
    user = get_user_model().objects.create_user(username="someone", password="pw-someone-0123")
    client.force_login(user)
    page = client.get("/researcher/").content.decode()
    assert "The research workspace is for researchers of a campaign" in page
    grant(campaign, user, CampaignMembership.Role.VIEWER)
    response = client.get(f"/researcher/{campaign.slug}/settings/")
    page = response.content.decode()
    assert response.status_code == 403
    assert "<h1>Not allowed</h1>" in page
    assert "This needs the owner role in Darfur 2023" in page and "ask its owner" in page
    assert 'class="brand"' in page


@pytest.mark.django_db
def test_an_expired_form_says_nothing_was_saved_and_what_to_do() -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/register/", {"username": "new", "password1": "x", "password2": "x"})
    page = response.content.decode()
    assert response.status_code == 403
    assert "This form has expired" in page and "nothing you sent was saved" in page
    assert get_user_model().objects.filter(username="new").count() == 0


def test_the_server_error_page_needs_no_database_and_speaks_the_volunteers_language() -> None:
    # No django_db mark: a query here would fail the test, as the page must render with the database down.
    request = RequestFactory().get("/campaigns/x/classify/")
    with translation.override("fr"):
        response = server_error(request)
    page = response.content.decode()
    assert response.status_code == 500
    assert "Un problème est survenu" in page and "pas comptée deux fois" in page and 'lang="fr"' in page
    with translation.override("en"):
        assert "it will not be counted twice" in server_error(request).content.decode()
