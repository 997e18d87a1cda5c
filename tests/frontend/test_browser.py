"""Headless Chromium: a new volunteer finds the demo imagery campaign and answers three tasks."""

from __future__ import annotations

from typing import Any

import pytest

from tasks import services
from tasks.models import Campaign
from verification.models import Answer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def imagery_campaign(demo_pair: Any) -> Campaign:
    before, after, _ = demo_pair
    campaign = services.campaign_create(
        slug="demo-imagery", title="Decode Darfur (demo)", kind=Campaign.Kind.IMAGERY, description="Villages."
    )
    services.source_ingest_imagery(campaign=campaign, before=before, after=after)
    return campaign


def test_new_volunteer_answers_three_imagery_tasks(
    browser: Any, live_server: Any, imagery_campaign: Campaign
) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="Decode Darfur (demo)").click()
    page.locator("#start").click()
    for n in range(3):
        page.wait_for_selector("#classify[data-ready='1'] #img-after", state="visible")
        task_id = page.locator("#classify").get_attribute("data-task-id")
        page.keyboard.press("3" if n % 2 == 0 else "2")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"#classify[data-answered='{n + 1}']", state="attached")
        assert task_id is not None
    answers = list(Answer.objects.filter(campaign=imagery_campaign).order_by("id"))
    assert [a.label for a in answers] == ["destroyed", "intact", "destroyed"]
    assert len({a.task_id for a in answers}) == 3
    assert len({a.volunteer_id for a in answers}) == 1
    assert all(a.duration_ms is not None for a in answers)
    page.close()
