"""ingest_imagery and ingest_video: JSON summaries on success, one-line errors and no trace on bad input."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tasks.models import Campaign, Source, Task
from tests.conftest import run_command as run
from verification import ledger
from verification.models import LedgerEntry

pytestmark = pytest.mark.django_db


def snapshot(media_root: Path) -> tuple[int, int, int, int, list[str]]:
    files = sorted(str(p.relative_to(media_root)) for p in media_root.rglob("*") if p.is_file())
    return (
        Campaign.objects.count(),
        Source.objects.count(),
        Task.objects.count(),
        LedgerEntry.objects.count(),
        files,
    )


def test_ingest_imagery_creates_tile_tasks_and_a_verifiable_ledger(geotiff: Path) -> None:
    code, summary, _ = run("ingest_imagery", "--campaign", "rgb", str(geotiff / "RGB.byte.tif"))
    assert code == 0 and summary is not None
    assert summary["tasks_created"] == Task.objects.filter(campaign__slug="rgb").count() > 0
    grid = summary["grid"]
    assert summary["tasks_created"] + summary["tiles_skipped"] == grid["rows"] * grid["cols"]
    assert len(summary["source_sha256"]) == 64
    source = Source.objects.get(campaign__slug="rgb")
    assert source.sha256 == summary["source_sha256"] and source.ready
    lines = [e.as_line() for e in LedgerEntry.objects.filter(campaign__slug="rgb").order_by("seq")]
    assert [line["record"]["type"] for line in lines] == [
        "campaign_created",
        "source_ingested",
        "tasks_derived",
    ]
    assert ledger.verify_entries(lines) is None


def test_rerunning_the_same_ingest_creates_no_duplicates(geotiff: Path) -> None:
    run("ingest_imagery", "--campaign", "rgb", str(geotiff / "RGB.byte.tif"))
    count = Task.objects.count()
    code, summary, _ = run("ingest_imagery", "--campaign", "rgb", str(geotiff / "RGB.byte.tif"))
    assert code == 0 and summary is not None and summary["tasks_created"] == 0
    assert Task.objects.count() == count


@pytest.mark.parametrize(
    "name, message",
    [("corrupt.tif", "corrupt.tif"), ("rotated.tif", "CRS")],
)
def test_bad_geotiffs_leave_nothing_behind(
    geotiff: Path, _isolated_media: Path, name: str, message: str
) -> None:
    before = snapshot(_isolated_media)
    code, summary, err = run("ingest_imagery", "--campaign", "bad", str(geotiff / name))
    assert code == 1 and summary is None
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert snapshot(_isolated_media) == before


def test_text_file_renamed_tif_is_refused(tmp_path: Path, _isolated_media: Path) -> None:
    fake = tmp_path / "notes.tif"
    fake.write_text("this is not a raster")
    before = snapshot(_isolated_media)
    code, _, err = run("ingest_imagery", "--campaign", "bad", str(fake))
    assert code == 1 and err.startswith("error: ")
    assert snapshot(_isolated_media) == before


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = run("ingest_imagery", "--campaign", "bad", str(tmp_path / "nope.tif"))
    assert code == 1 and "no such file" in err


def test_all_nodata_scene_gives_zero_tasks_and_says_why(geotiff: Path) -> None:
    code, summary, _ = run("ingest_imagery", "--campaign", "empty", str(geotiff / "all-nodata.tif"))
    assert code == 0 and summary is not None
    assert summary["tasks_created"] == 0 and summary["tiles_skipped"] >= 1
    assert "valid pixels" in summary["why_no_tasks"]


def test_ingest_video_splits_a_generated_video_into_segments(tmp_path: Path) -> None:
    from fixtures.synthetic_video import make_demo_video

    path = tmp_path / "street.mp4"
    make_demo_video(path)
    code, summary, _ = run("ingest_video", "--campaign", "clips", str(path), "--max-segment-seconds", "8")
    assert code == 0 and summary is not None
    tasks = list(Task.objects.filter(campaign__slug="clips").order_by("start_seconds"))
    assert summary["tasks_created"] == len(tasks) >= 4
    assert summary["duration_seconds"] > 20
    assert all(t.end_seconds - t.start_seconds <= 8.0 + 1e-6 for t in tasks)
    assert tasks[0].start_seconds == 0.0
    assert all(
        a.end_seconds == pytest.approx(b.start_seconds, abs=1e-3) for a, b in itertools.pairwise(tasks)
    )
    assert all(len(t.media["keyframes"]) == 3 for t in tasks)


def test_zero_byte_video_is_refused(tmp_path: Path, _isolated_media: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    before = snapshot(_isolated_media)
    code, _, err = run("ingest_video", "--campaign", "clips", str(empty))
    assert code == 1 and err.startswith("error: ")
    assert snapshot(_isolated_media) == before


def test_video_into_an_imagery_campaign_is_refused(tmp_path: Path, geotiff: Path) -> None:
    run("ingest_imagery", "--campaign", "rgb", str(geotiff / "byte.tif"))
    from fixtures.synthetic_video import make_demo_video

    path = tmp_path / "street.mp4"
    make_demo_video(path)
    code, _, err = run("ingest_video", "--campaign", "rgb", str(path))
    assert code == 1 and "imagery campaign" in err
