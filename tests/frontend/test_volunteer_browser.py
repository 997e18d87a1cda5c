"""Headless Chromium: a new volunteer's whole journey, and the classify page on a 360 px phone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tasks.models import Campaign, Volunteer
from tests.frontend.conftest import GOLD_EXPLANATION, wait_ready
from verification.models import Answer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = os.environ.get("CORROBORATE_SCREENSHOTS")  # a folder: the test saves what it saw there


def shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def test_new_volunteer_tutorial_keyboard_imagery_mouse_video_and_gold_feedback(
    browser: Any, live_server: Any, imagery_campaign: Campaign, video_campaign: Campaign
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    api_posts: list[str] = []
    page.on("request", lambda r: api_posts.append(r.url) if r.method == "POST" and "/api/" in r.url else None)
    page.goto(live_server.url + "/")
    shot(page, "home")
    page.get_by_role("link", name="Decode Darfur (demo)").first.click()
    # The tutorial shows real task tiles, and the field guide an example of an answer.
    page.wait_for_selector("#tutorial[open] .step img", state="visible")
    assert page.locator(".guide-item img").count() >= 1
    shot(page, "campaign")
    page.locator("#start").click()
    page.wait_for_selector("#classify", state="attached")
    volunteer = Volunteer.objects.get()
    assert volunteer.tutorial_done == ["demo-imagery"]

    # Five imagery tasks with the keyboard; the first is the gold task, whose feedback is shown.
    seen: list[str] = []
    for n in range(5):
        task_id = wait_ready(page)
        seen.append(task_id)
        if n == 1:
            page.keyboard.press("f")  # flicker, then back
            page.wait_for_selector(".viewer.mode-flicker", state="attached")
            page.keyboard.press("f")
            page.keyboard.press("+")
            page.keyboard.press("ArrowLeft")
            assert "scale(2)" in (
                page.locator("#img-after")
                .evaluate_handle("i => i.parentElement.style.transform")
                .json_value()
                or ""
            )
            page.keyboard.press("0")
            shot(page, "classify-imagery")
        if n == 2:
            # A mode chosen with the mouse leaves the focus on its button: the answer's key still moves the
            # focus to the answer, so Enter submits it instead of pressing the button again.
            page.locator("button[data-mode='swipe']").click()
            page.locator("button[data-mode='side']").click()
        page.keyboard.press("3" if n % 2 == 0 else "u")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"#classify[data-answered='{n + 1}']", state="attached")
        if n == 0:
            page.wait_for_selector("#feedback:not([hidden])", state="visible")
            text = page.locator("#feedback-text").inner_text()
            assert "Well spotted" in text and "Structures destroyed" in text and GOLD_EXPLANATION in text
            assert page.evaluate("document.activeElement.id") == "feedback-next"
            # The volunteer's counts already include the answer the feedback is about.
            assert "Today: 1 answered · here: 1" in page.locator("#progress").inner_text()
            shot(page, "feedback")
            page.keyboard.press("Enter")
    assert len(set(seen)) == 5
    # One request per task: each answer brings the next task's lease back with it.
    assert sum("/next-task" in url for url in api_posts) == 1
    assert sum(url.endswith("/answers") for url in api_posts) == 5
    answers = list(Answer.objects.filter(campaign=imagery_campaign).order_by("id"))
    assert [a.label for a in answers] == ["destroyed", "unsure", "destroyed", "unsure", "destroyed"]
    assert answers[0].task.is_gold
    assert all(a.duration_ms is not None and a.duration_ms > 0 for a in answers)

    # Two video tasks with the mouse; the graphic one is blurred until the volunteer chooses to see it.
    page.goto(f"{live_server.url}/campaigns/demo-video/")
    page.locator("#start").click()
    for n in range(2):
        wait_ready(page)
        if page.locator("#classify").get_attribute("data-graphic") == "1":
            assert page.locator("#media .video-wrap.blurred").count() == 1
            shot(page, "classify-video-graphic")
            page.locator("#graphic-show").click()
            assert page.locator("#media .video-wrap.blurred").count() == 0
        page.locator(".keyframe").nth(1).click()
        page.locator("label[for='choice-consistent']").click()
        page.locator("label[for='q-clues-terrain']").click()
        page.locator("#submit").click()
        page.wait_for_selector(f"#classify[data-answered='{n + 1}']", state="attached")
    video_answers = list(Answer.objects.filter(campaign=video_campaign).order_by("id"))
    assert [a.answer["authentic"] for a in video_answers] == ["consistent", "consistent"]
    assert all(a.answer["clues"] == ["terrain"] for a in video_answers)
    assert errors == []
    page.close()


def test_phone_viewport_every_control_is_visible_and_tappable(
    browser: Any, live_server: Any, imagery_campaign: Campaign, video_campaign: Campaign
) -> None:
    page = browser.new_page(viewport={"width": 360, "height": 740}, device_scale_factor=2, has_touch=True)
    for slug in ("demo-imagery", "demo-video"):
        page.goto(f"{live_server.url}/campaigns/{slug}/")
        start = page.locator("#start")
        box = start.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["height"] >= 44
        start.click()
        wait_ready(page)
        shot(page, f"phone-{slug}")
        controls = page.locator(
            "#classify button:visible, #classify label.choice:visible, #classify label.small-choice:visible, "
            "#classify input[type=range]:visible, #classify a.button:visible"
        )
        assert controls.count() >= 5
        for i in range(controls.count()):
            control = controls.nth(i)
            control.scroll_into_view_if_needed()
            box = control.bounding_box()
            name = control.evaluate("e => e.id || e.getAttribute('for') || e.textContent.trim()")
            assert box is not None, name
            assert box["x"] >= 0 and box["x"] + box["width"] <= 360, (name, box)
            assert box["height"] >= 44 and box["width"] >= 44, (name, box)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        # A tap on an answer and on Submit works with touch.
        page.locator("#choices label.choice").first.tap()
        page.locator("#submit").tap()
        page.wait_for_selector("#classify[data-answered='1']", state="attached")
    page.close()


def test_a_newcomer_past_the_site_wide_budget_gets_in_by_the_browsers_proof_of_work(
    browser: Any, live_server: Any, imagery_campaign: Campaign, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a launch, the first newcomer spends the budget (here 1 a minute); the second is offered a challenge,
    and the classify page solves it (16 bits, the default) and shows a task instead of waiting for the window."""
    from tasks.api import NewcomerThrottle

    settings.CORROBORATE_RATE_LIMITS = True
    settings.NEWCOMER_PROOF_BITS = 16
    monkeypatch.setattr(
        NewcomerThrottle, "THROTTLE_RATES", {**NewcomerThrottle.THROTTLE_RATES, "newcomers": "1/m"}
    )
    refusals: list[int] = []
    pages = []
    for n in range(2):
        context = browser.new_context(viewport={"width": 360, "height": 740})
        page = context.new_page()
        page.on(
            "response",
            lambda r: refusals.append(r.status) if "/next-task" in r.url and r.status == 429 else None,
        )
        page.goto(f"{live_server.url}/campaigns/demo-imagery/classify/")
        wait_ready(page)
        pages.append(page)
        assert len(refusals) == n  # the first walked in; the second was refused once, then admitted
    proof_ms = pages[1].locator("#classify").get_attribute("data-proof-ms")
    assert proof_ms is not None and int(proof_ms) < 30_000
    print(f"proof of work in the browser: {proof_ms} ms")
    assert pages[0].locator("#classify").get_attribute("data-proof-ms") is None
    assert Volunteer.objects.count() == 2
    shot(pages[1], "newcomer-admitted-by-proof")
    for page in pages:
        page.context.close()


def test_when_proofs_keep_being_refused_the_page_stops_working_and_waits(
    browser: Any, live_server: Any, imagery_campaign: Campaign, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proof can be refused (too old, say); the page solves a fresh challenge, but after three refusals in a
    row it stops spending the phone's battery and waits for the window, as before proofs existed."""
    from config import proof_of_work
    from tasks.api import NewcomerThrottle

    settings.CORROBORATE_RATE_LIMITS = True
    settings.NEWCOMER_PROOF_BITS = 8
    monkeypatch.setattr(
        NewcomerThrottle, "THROTTLE_RATES", {**NewcomerThrottle.THROTTLE_RATES, "newcomers": "1/m"}
    )
    monkeypatch.setattr(proof_of_work, "proof_admits", lambda proof: False)
    first = browser.new_context().new_page()
    first.goto(f"{live_server.url}/campaigns/demo-imagery/classify/")
    wait_ready(first)
    page = browser.new_context().new_page()
    proofs: list[str] = []
    page.on("request", lambda r: proofs.append(r.url) if r.headers.get("x-newcomer-proof") else None)
    page.goto(f"{live_server.url}/campaigns/demo-imagery/classify/")
    page.wait_for_selector("#progress:has-text('very fast')")
    page.wait_for_timeout(1500)
    assert len(proofs) == 3
    assert page.locator("#classify").get_attribute("data-ready") != "1"
    first.context.close()
    page.context.close()


def test_the_pages_sha256_agrees_with_pythons_across_every_padding_boundary(browser: Any) -> None:
    """proof.js hashes a challenge's whole blocks once and the rest per try, in one or two blocks: every
    length from 0 to 140 bytes (both sides of 55/56 and 64 in each block), non-ASCII included, must give
    proofs that Python's hashlib accepts."""
    from config import proof_of_work

    script = (Path(__file__).resolve().parents[2] / "frontend/static/frontend/proof.js").read_text()
    page = browser.new_page()
    page.set_content("<!doctype html><title>proof</title>")
    page.add_script_tag(content=script)
    challenges = ["x" * n for n in range(141)] + ["é" * 40, "1.Zürich:ø:" + "s" * 50]
    proofs = page.evaluate(
        "async (cs) => { const out = []; for (const c of cs) out.push(await window.CorroborateProof.solve(c, 6)); return out; }",
        challenges,
    )
    for challenge, proof in zip(challenges, proofs, strict=True):
        assert proof.rsplit("#", 1)[0] == challenge
        assert proof_of_work.proof_holds(proof, 6), (len(challenge.encode()), proof)
    page.close()
