"""Video in the platform: near-duplicates across sources, full-resolution keyframes, graphic flag."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.test import Client

from fixtures.synthetic_video import make_altered_copy, make_demo_video
from tasks import services
from tasks.models import Campaign, Task
from tests.factories import VolunteerFactory
from verification.services import answer_submit

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("videos")
    original = folder / "street.mp4"
    make_demo_video(original)
    copy = folder / "reupload.mp4"
    make_altered_copy(original, copy, scale=0.5, crop_fraction=0.03, start_seconds=6.0, end_seconds=22.0)
    return original, copy


def test_a_reencoded_copy_is_flagged_as_a_near_duplicate_of_the_earlier_video(videos, client: Client) -> None:
    original, copy = videos
    campaign = services.campaign_create(slug="footage", title="Footage", kind=Campaign.Kind.VIDEO)
    services.source_ingest_video(campaign=campaign, path=original)
    summary = services.source_ingest_video(campaign=campaign, path=copy)
    assert summary["near_duplicates"], "the re-encoded, rescaled copy must match the original"
    first = summary["near_duplicates"][0]
    assert first["matches_source"] == "street.mp4"
    task = Task.objects.get(pk=first["task"])
    body = client.get(f"/api/v1/tasks/{task.pk}").json()
    assert body["near_duplicates"][0]["matches_source"] == "street.mp4"
    matched = Task.objects.get(pk=first["matches_task"])
    assert abs(matched.start_seconds - task.start_seconds) < 1.0


def test_keyframes_are_served_at_full_resolution(videos, client: Client) -> None:
    original, _ = videos
    campaign = services.campaign_create(slug="footage2", title="Footage", kind=Campaign.Kind.VIDEO)
    services.source_ingest_video(campaign=campaign, path=original)
    task = Task.objects.filter(campaign=campaign).first()
    keyframe = task.media["keyframes"][0]
    assert (keyframe["width"], keyframe["height"]) == (480, 270)
    response = client.get(f"/media/{keyframe['name']}")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_one_graphic_report_blurs_the_segment_for_the_next_volunteers(videos) -> None:
    original, _ = videos
    campaign = services.campaign_create(slug="footage3", title="Footage", kind=Campaign.Kind.VIDEO)
    services.source_ingest_video(campaign=campaign, path=original)
    task = Task.objects.filter(campaign=campaign).first()
    answer_submit(
        task=task,
        volunteer=VolunteerFactory(),
        answer={"authentic": "consistent", "graphic": "yes"},
        client_id=uuid.uuid4(),
    )
    task.refresh_from_db()
    assert task.flags["graphic"] is True


def test_researchers_see_the_match_the_keyframe_links_and_the_container_metadata(
    videos, client: Client
) -> None:
    from tasks.models import CampaignMembership
    from tests.factories import UserFactory, grant

    original, copy = videos
    campaign = services.campaign_create(slug="footage4", title="Footage", kind=Campaign.Kind.VIDEO)
    services.source_ingest_video(campaign=campaign, path=original)
    summary = services.source_ingest_video(campaign=campaign, path=copy)
    researcher = UserFactory()
    grant(campaign, researcher, CampaignMembership.Role.VIEWER)
    client.force_login(researcher)
    task_id = summary["near_duplicates"][0]["task"]
    page = client.get(f"/researcher/footage4/tasks/{task_id}/").content.decode()
    assert "Seen before" in page and "street.mp4" in page
    assert 'download title="Full resolution' in page
    assert "Encoder (a re-encode often shows here)" in page and "Lavf" in page
    assert summary["source_sha256"] in page


def test_volunteers_are_told_a_segment_was_seen_before(videos) -> None:
    original, copy = videos
    campaign = services.campaign_create(slug="footage5", title="Footage", kind=Campaign.Kind.VIDEO)
    services.source_ingest_video(campaign=campaign, path=original)
    summary = services.source_ingest_video(campaign=campaign, path=copy)
    duplicated = {m["task"] for m in summary["near_duplicates"]}
    volunteer = Client()
    seen = []
    while (response := volunteer.post("/api/v1/campaigns/footage5/next-task")).status_code == 200:
        task = response.json()["task"]
        if task["near_duplicates"]:
            seen.append(task["id"])
            assert task["near_duplicates"][0]["matches_source"] == "street.mp4"
        volunteer.post(f"/api/v1/tasks/{task['id']}/skip")
    assert duplicated and set(seen) == duplicated
