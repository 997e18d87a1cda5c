"""Headless Chromium + axe-core: every volunteer and researcher page, in the states people meet, breaks no WCAG
2.1 A/AA rule (contrast, labels, names, landmarks, headings, language) nor axe's best practices.

axe-core comes inside the axe-playwright-python wheel (no download at run time); it runs on the real pages, with
their Content-Security-Policy on, after the page's own script has drawn the task.
"""

from __future__ import annotations

import importlib.resources
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from tasks.models import Campaign, CampaignMembership, Task, Volunteer
from tests.frontend.conftest import wait_ready
from verification import services as verification_services
from verification.models import AuditItem

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE_RULESETS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def axe_source() -> str:
    return (importlib.resources.files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")


def violations(page: Any, where: str) -> list[str]:
    """axe's violations on the page as it is now, one line each: where, rule, impact, the first elements."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source())
    result = page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_RULESETS
    )
    return [
        f"{where}: {v['id']} ({v['impact']}) {v['help']}: {[n['target'] for n in v['nodes'][:3]]}"
        for v in result["violations"]
    ]


def test_volunteer_pages_pass_axe_in_english_and_french_on_desktop_and_phone(
    browser: Any, live_server: Any, imagery_campaign: Campaign, video_campaign: Campaign
) -> None:
    found: list[str] = []
    for locale, viewport in (
        ("en-GB", {"width": 1200, "height": 900}),
        ("fr-FR", {"width": 360, "height": 740}),
    ):
        context = browser.new_context(locale=locale, viewport=viewport)
        page = context.new_page()
        for path in (
            "/",
            "/campaigns/demo-imagery/",
            "/accounts/login/",
            "/accounts/register/",
            "/no-such-page/",
        ):
            page.goto(live_server.url + path)
            found += violations(page, f"{locale} {path}")
        assert page.locator("html").get_attribute("lang") == locale[:2]

        # The classify page with a task drawn, then the gold task's feedback (the first task is gold).
        page.goto(f"{live_server.url}/campaigns/demo-imagery/classify/")
        wait_ready(page)
        found += violations(page, f"{locale} classify imagery")
        page.locator("#choices label.choice").nth(1).click()
        page.locator("#submit").click()
        page.wait_for_selector("#feedback:not([hidden])")
        found += violations(page, f"{locale} gold feedback")

        # Video: the first segment is flagged graphic, so the warning gate is up; then the segment itself.
        page.goto(f"{live_server.url}/campaigns/demo-video/classify/")
        wait_ready(page)
        page.wait_for_selector("#graphic-gate:not([hidden])")
        found += violations(page, f"{locale} classify video, graphic warning")
        page.locator("#graphic-show").click()
        found += violations(page, f"{locale} classify video")
        context.close()
    assert not found, "\n".join(found)


def test_researcher_pages_pass_axe(browser: Any, live_server: Any, imagery_campaign: Campaign) -> None:
    owner = get_user_model().objects.create_user(username="lead", password="pw-lead-0123")
    CampaignMembership.objects.create(
        campaign=imagery_campaign, user=owner, role=CampaignMembership.Role.OWNER
    )
    tasks = list(Task.objects.filter(campaign=imagery_campaign, is_gold=False).order_by("id")[:6])
    for n, task in enumerate(tasks):
        for label in ("destroyed", "destroyed" if n % 2 else "intact", "destroyed"):
            verification_services.answer_submit(
                task=task,
                volunteer=Volunteer.objects.create(),
                answer={"damage": label},
                client_id=uuid.uuid4(),
            )
    AuditItem.objects.create(
        campaign=imagery_campaign,
        task=tasks[1],
        crowd_label="destroyed",
        crowd_confidence=0.9,
        drawn_by=owner,
    )
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "lead")
    page.fill("input[name=password]", "pw-lead-0123")
    page.locator("form.form button[type=submit]").click()
    page.wait_for_url(f"{live_server.url}/**")
    base = f"/researcher/{imagery_campaign.slug}"
    found: list[str] = []
    for path in (
        "/researcher/",
        f"{base}/",
        f"{base}/dashboard/",
        f"{base}/map/",
        f"{base}/review/",
        f"{base}/tasks/{tasks[1].pk}/",
        f"{base}/evidence/",
        f"{base}/sources/",
        f"{base}/gold/",
        f"{base}/settings/",
        f"{base}/members/",
        f"{base}/audit/",
        f"{base}/audit/{tasks[1].pk}/",
        f"{base}/exports/",
    ):
        response = page.goto(live_server.url + path)
        assert response is not None and response.status == 200, path
        page.wait_for_load_state("networkidle")
        found += violations(page, path)
    assert not found, "\n".join(found)
