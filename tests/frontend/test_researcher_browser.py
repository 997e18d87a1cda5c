"""Headless Chromium: a researcher sets up a campaign, uploads a GeoTIFF, watches, reviews and curates evidence."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from tasks import jobs
from tasks.models import Campaign, Job, Task, Volunteer
from verification import services as verification_services
from verification.models import Decision, EvidenceSet, LedgerEntry

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = os.environ.get("CORROBORATE_SCREENSHOTS")  # a folder, to look at the pages after a run


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Jobs are recorded instead of sent to a broker; the test runs them itself, as a worker would."""
    calls: list[Any] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: calls.append(args))
    return calls


def shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def wait_for_job(campaign_slug: str, timeout_s: float = 20) -> Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = Job.objects.filter(campaign__slug=campaign_slug).first()
        if job is not None:
            return job
        time.sleep(0.1)
    raise AssertionError("the upload did not create a job")


def answer(task: Task, label: str) -> None:
    verification_services.answer_submit(
        task=task, volunteer=Volunteer.objects.create(), answer={"damage": label}, client_id=uuid.uuid4()
    )


def test_researcher_runs_an_investigation_from_the_browser(
    browser: Any, live_server: Any, geotiff: Path, queued: list[Any]
) -> None:
    user = get_user_model().objects.create_user(username="lead", password="pw-lead-0123")
    user.user_permissions.add(Permission.objects.get(codename="add_campaign"))
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    csp_errors: list[str] = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    url = live_server.url

    # Log in and create a campaign; the question set builder edits the JSON.
    page.goto(url + "/accounts/login/?next=/researcher/")
    page.fill("#id_username", "lead")
    page.fill("#id_password", "pw-lead-0123")
    page.click("#main button[type=submit]")
    page.wait_for_url("**/researcher/")
    shot(page, "00-home")
    page.get_by_role("link", name="New campaign").click()
    page.wait_for_selector("#qs-builder .qs-question[data-question='damage']")
    page.fill("#id_slug", "darfur-test")
    page.fill("#id_title", "Darfur test")
    page.select_option("#id_status", "live")
    page.fill("#id_min_answers", "2")
    page.fill("#id_max_answers", "3")
    page.fill("#id_retirement_confidence", "0.9")
    page.click("#qs-add")  # a new single-choice question with two choices
    page.wait_for_selector("#qs-builder .qs-question[data-question='q1']")
    page.click("#save-campaign")  # the new question has no text yet: the server says so
    page.wait_for_selector("#qs-errors")
    assert "'text' must be a non-empty string" in page.text_content("#qs-errors")
    page.wait_for_selector("#qs-builder .qs-question[data-question='q1']")
    page.fill("#qs-builder .qs-question[data-question='q1'] input.qs-text", "Is there a fence ring?")
    shot(page, "01-new-campaign")
    page.click("#save-campaign")
    page.wait_for_url("**/researcher/darfur-test/sources/")
    campaign = Campaign.objects.get(slug="darfur-test")
    assert [q["key"] for q in campaign.question_set["questions"]] == ["damage", "marks", "note", "q1"]
    assert (campaign.min_answers, campaign.max_answers, campaign.retirement_confidence) == (2, 3, 0.9)

    # Upload a GeoTIFF: the page shows the upload, then the job's progress until the tasks exist.
    assert "None yet." in page.text_content("#stored-originals")
    page.set_input_files("#id_before", str(geotiff / "RGB.byte.tif"))
    page.fill("#id_overlap_px", "0")
    page.click("#upload-submit")
    page.wait_for_selector("#jobs .job[data-job-url]")
    job = wait_for_job("darfur-test")
    assert queued, "the job was not queued on commit"
    jobs.job_run(job.pk)
    page.wait_for_selector("#jobs .job[data-job-status='done']", timeout=15000)
    tasks = list(Task.objects.filter(campaign=campaign).order_by("id"))
    assert len(tasks) >= 4
    assert page.text_content("#task-count") == str(len(tasks))
    assert page.locator("#jobs .job-bar").first.get_attribute("value") == "100"
    assert page.text_content("#jobs .job-status") == "Done"
    assert page.text_content("#jobs .job-message") == f"{len(tasks)} tasks created"
    # The stored originals list the new file without a reload.
    page.wait_for_function(
        "document.querySelector('#stored-originals').textContent.includes('RGB.byte.tif')", timeout=10000
    )
    assert "None yet." not in page.text_content("#stored-originals")
    assert "single image" in page.text_content("#stored-originals")
    assert page.locator("#upload-progress").is_hidden()  # the job's row took over from the upload bar
    page.reload()  # progress survives a reload: the campaign's jobs are listed
    page.wait_for_selector(f"#job-{job.pk}[data-job-status='done']")
    shot(page, "02-sources")

    # The crowd answers: one task is split three ways (needs review), two agree on "destroyed".
    disputed = tasks[0]
    for label in ("intact", "destroyed", "no_structures"):
        answer(disputed, label)
    for task in tasks[1:3]:
        answer(task, "destroyed")
        answer(task, "destroyed")
    disputed.refresh_from_db()
    assert disputed.status == Task.Status.NEEDS_REVIEW

    # Dashboard: charts rendered on the server.
    page.goto(url + "/researcher/darfur-test/dashboard/")
    page.wait_for_selector("#chart-labels svg rect")
    assert page.locator("#chart-answers svg rect").count() >= 1
    assert page.locator("#volunteers tbody tr").count() == 7
    shot(page, "03-dashboard")

    # Map: the tasks over the platform's own overview; filters; a click opens the task.
    page.goto(url + "/researcher/darfur-test/map/")
    page.wait_for_selector("#map[data-ready='1']")
    assert page.get_attribute("#map", "data-count") == str(len(tasks))
    assert page.locator("#map img.leaflet-image-layer").count() == 1
    shot(page, "04-map")
    page.select_option("#filter-status", "needs_review")
    page.wait_for_selector("#map[data-count='1']")
    page.locator("#map path.leaflet-interactive").first.click()
    page.wait_for_url(f"**/researcher/darfur-test/tasks/{disputed.pk}/")

    # Review: the disputed task comes first; a reviewer adjudicates with a note, then changes their mind.
    page.goto(url + "/researcher/darfur-test/review/")
    assert page.locator("#review-queue tbody tr").first.get_attribute("data-task") == str(disputed.pk)
    page.locator("#review-queue tbody tr").first.get_by_role("link").click()
    page.wait_for_selector("#answers")
    assert page.locator("#answers tbody tr").count() == 3
    assert page.locator("#distribution tr").count() >= 3
    page.select_option("#id_label", "destroyed")
    page.fill("#id_note", "Ash rings where huts stood in March.")
    page.click("#decide")
    page.wait_for_selector("#decision-history li.current")
    assert "destroyed" in page.text_content("#decision-history li.current")
    page.select_option("#id_label", "intact")
    page.fill("#id_note", "Second look: the dark rings are shadows.")
    page.click("#decide")
    page.wait_for_selector("#decision-history li:nth-child(2)")
    assert "intact" in page.text_content("#decision-history li.current")
    shot(page, "05-task")
    assert [d.label for d in Decision.objects.filter(task=disputed).order_by("id")] == ["destroyed", "intact"]

    # Evidence set: from a filter, plus a task by hand, then frozen for good.
    page.goto(url + "/researcher/darfur-test/evidence/")
    page.fill("#id_name", "Destroyed villages")
    page.check("input[name=labels][value=destroyed]")
    page.click("#create-evidence-set")
    page.wait_for_selector("#evidence-items")
    assert page.text_content("#item-count") == "2"
    page.fill("#add-task-ids", str(disputed.pk))
    page.click("#add-form button")
    page.wait_for_selector(f"#evidence-items tr[data-task='{disputed.pk}']")
    assert page.text_content("#item-count") == "3"
    page.click("#freeze")
    page.wait_for_selector("#frozen")
    assert page.locator("#add-form").count() == 0 and page.locator("#derive").count() == 1
    shot(page, "06-evidence")
    evidence_set = EvidenceSet.objects.get(campaign=campaign, name="Destroyed villages")
    assert evidence_set.frozen_at is not None and evidence_set.items.count() == 3
    ledger = list(LedgerEntry.objects.filter(campaign=campaign).values_list("record__type", flat=True))
    assert ledger[-3:] == ["evidence_set_created", "evidence_set_added", "evidence_set_frozen"]

    # On a phone (a reviewer in the field) no page of the workspace scrolls sideways: a table wider than
    # the screen scrolls in its own box, which the keyboard can reach.
    page.set_viewport_size({"width": 360, "height": 740})
    for path in (
        "",
        "darfur-test/",
        "darfur-test/dashboard/",
        "darfur-test/map/",
        "darfur-test/review/",
        f"darfur-test/tasks/{disputed.pk}/",
        "darfur-test/audit/",
        "darfur-test/evidence/",
        f"darfur-test/evidence/{evidence_set.pk}/",
        "darfur-test/exports/",
        "darfur-test/sources/",
        "darfur-test/gold/",
        "darfur-test/settings/",
        "darfur-test/members/",
    ):
        page.goto(f"{url}/researcher/{path}")
        page.wait_for_load_state("load")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, path
    assert page.locator(".table-scroll[tabindex='0'] > table").count() >= 1
    assert csp_errors == []
    page.close()


def test_a_map_of_thousands_of_tiles_draws_on_a_canvas_and_still_opens_a_task(
    browser: Any, live_server: Any
) -> None:
    """Above 2,000 tiles the map draws every footprint on one canvas instead of one SVG path each; filters,
    tooltips and clicks still work there."""
    from tests.factories import CampaignFactory, SourceFactory, grant
    from verification.models import Consensus

    user = get_user_model().objects.create_user(username="lead", password="pw-lead-0123")
    campaign = CampaignFactory(slug="wide", title="Wide")
    grant(campaign, user, "owner")
    source = SourceFactory(campaign=campaign)
    side, step = 47, 0.01  # 2,209 tiles east of 23° E, north of 13° N; the middle one is (23, 23)
    tasks = Task.objects.bulk_create(
        Task(
            campaign=campaign,
            source=source,
            key=f"tile:wide:{row}:{col}",
            kind=Task.Kind.TILE,
            window={"col_off": col * 256, "row_off": row * 256, "width": 256, "height": 256},
            bbox=[23 + col * step, 13 + row * step, 23 + (col + 1) * step, 13 + (row + 1) * step],
            footprint={
                "type": "Polygon",
                "coordinates": [
                    [
                        [23 + col * step, 13 + row * step],
                        [23 + (col + 1) * step, 13 + row * step],
                        [23 + (col + 1) * step, 13 + (row + 1) * step],
                        [23 + col * step, 13 + (row + 1) * step],
                        [23 + col * step, 13 + row * step],
                    ]
                ],
            },
            media={},
            status=Task.Status.NEEDS_REVIEW if (row, col) == (23, 23) else Task.Status.OPEN,
        )
        for row in range(side)
        for col in range(side)
    )
    disputed = next(t for t in tasks if t.status == Task.Status.NEEDS_REVIEW)
    Consensus.objects.create(task=disputed, label="destroyed", confidence=0.6, agreement=0.5, n_answers=10)

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(live_server.url + "/accounts/login/?next=/researcher/")
    page.fill("#id_username", "lead")
    page.fill("#id_password", "pw-lead-0123")
    page.click("#main button[type=submit]")
    page.wait_for_url("**/researcher/")
    page.goto(live_server.url + "/researcher/wide/map/")
    page.wait_for_selector("#map[data-ready='1']", timeout=30_000)
    assert page.get_attribute("#map", "data-count") == str(side * side)
    assert page.text_content("#map-count") == f"{side * side} of {side * side} tasks shown"
    assert page.locator("#map canvas").count() >= 1
    assert page.locator("#map path.leaflet-interactive").count() == 0  # no SVG element per tile
    shot(page, "map-canvas")

    page.select_option("#filter-status", "needs_review")
    page.wait_for_selector("#map[data-count='1']")
    # The one tile left is in the middle of the grid, and so of the map: hovering shows its tooltip and a
    # click on the canvas opens it.
    box = page.locator("#map").bounding_box()
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    bounds = page.evaluate(
        "() => { const r = document.querySelector('#map canvas').getBoundingClientRect();"
        " return [r.width, r.height]; }"
    )
    assert bounds[0] > 0 and bounds[1] > 0
    page.mouse.move(centre_x, centre_y)
    page.wait_for_selector(".leaflet-tooltip")
    assert f"#{disputed.pk}" in page.text_content(".leaflet-tooltip")
    page.mouse.click(centre_x, centre_y)
    page.wait_for_url(f"**/researcher/wide/tasks/{disputed.pk}/")
