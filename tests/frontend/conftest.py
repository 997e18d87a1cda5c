"""Headless Chromium for the page tests, launched as this machine allows (Debian's chromium, no downloads)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks import services
from tasks.models import Campaign, Task
from tests.factories import UserFactory

GOLD_EXPLANATION = "The huts visible before are replaced by dark ash rings after."

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls of the test are still synchronous.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def demo_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures.synthetic_video import make_demo_video

    path = tmp_path_factory.mktemp("video") / "market-street.mp4"
    make_demo_video(path)
    return path


@pytest.fixture
def imagery_campaign(demo_pair: Any) -> Campaign:
    before, after, _ = demo_pair
    campaign = services.campaign_create(
        slug="demo-imagery",
        title="Decode Darfur (demo)",
        kind=Campaign.Kind.IMAGERY,
        description="Villages.",
        gold_share=1.0,  # the gold task comes first, so that the journey always meets it
    )
    services.source_ingest_imagery(campaign=campaign, before=before, after=after)
    gold = Task.objects.filter(campaign=campaign).order_by("id").first()
    assert gold is not None
    services.task_mark_gold(
        task=gold, answer={"damage": "destroyed"}, explanation=GOLD_EXPLANATION, by=UserFactory()
    )
    campaign.tutorial = [
        {"title": "Compare two dates", "text": "Before and after.", "example": "destroyed"},
        {"title": "Look for huts", "text": "Round pale roofs.", "task": gold.pk},
    ]
    campaign.save(update_fields=["tutorial"])
    return campaign


@pytest.fixture
def video_campaign(demo_video: Path) -> Campaign:
    campaign = services.campaign_create(
        slug="demo-video", title="Verify the footage (demo)", kind=Campaign.Kind.VIDEO, gold_share=0
    )
    services.source_ingest_video(campaign=campaign, path=demo_video)
    first = Task.objects.filter(campaign=campaign).order_by("id").first()
    assert first is not None
    Task.objects.filter(pk=first.pk).update(flags={"graphic": True}, priority=5)
    return campaign


def wait_ready(page: Any) -> str:
    page.wait_for_selector("#classify[data-ready='1']", state="attached")
    task_id = page.locator("#classify").get_attribute("data-task-id")
    assert task_id
    return task_id
