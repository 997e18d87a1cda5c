"""A corpus of bad inputs (GeoTIFFs, videos, AOIs, question sets, crowd CSVs, answers).

Each gets a clear one-line error, and the database and the media storage are exactly as they were.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rasterio
from django.apps import apps
from django.core.management import call_command
from django.test import Client

from fixtures.synthetic_imagery import write_sparse_huge_geotiff
from tests.conftest import GEOTIFF

pytestmark = pytest.mark.django_db


# ------------------------------------------------------------------ the corpus, built once


def _patch_mp4(source: Path, destination: Path, box: bytes, patch: Callable[[bytearray, int], None]) -> None:
    data = bytearray(source.read_bytes())
    patch(data, data.find(box) - 4)
    destination.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures.synthetic_video import make_audio_only, make_video

    folder = tmp_path_factory.mktemp("bad")
    (folder / "empty.tif").write_bytes(b"")
    (folder / "notes.tif").write_text("not a raster at all\n")
    raw = (GEOTIFF / "RGB.byte.tif").read_bytes()
    (folder / "half.tif").write_bytes(raw[: len(raw) // 2])
    shutil.copy(GEOTIFF / "RGB.byte.tif", folder / "good.tif")
    with rasterio.open(GEOTIFF / "RGB.byte.tif") as src:
        profile = src.profile
        profile["transform"] = rasterio.Affine(
            src.transform.a, 0, src.transform.c + 400_000, 0, src.transform.e, src.transform.f
        )
        with rasterio.open(folder / "elsewhere.tif", "w", **profile) as dst:
            dst.write(src.read())
    write_sparse_huge_geotiff(folder / "huge.tif")
    png = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(png, format="PNG")
    (folder / "picture.tif").write_bytes(png.getvalue())
    (folder / "picture.mp4").write_bytes(png.getvalue())
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("not a video\n")
    video = folder / "clip.mp4"
    make_video(video, spec=[{"kind": "texture", "seconds": 2.0, "seed": 1}], size=(160, 120))
    data = video.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    make_audio_only(folder / "audio.m4a")

    def giant(data: bytearray, stsd: int) -> None:
        struct.pack_into(">HH", data, stsd + 16 + 32, 60000, 60000)

    _patch_mp4(video, folder / "giant.mp4", b"stsd", giant)
    (folder / "aoi-invalid.geojson").write_text("{ this is not json")
    (folder / "aoi-point.geojson").write_text(json.dumps({"type": "Point", "coordinates": [0, 0]}))
    far = {"type": "Polygon", "coordinates": [[[100, 10], [101, 10], [101, 11], [100, 11], [100, 10]]]}
    (folder / "aoi-far.geojson").write_text(json.dumps(far))
    (folder / "aoi-empty.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    (folder / "crowd-missing-columns.csv").write_text("task,worker\n1,a\n")
    (folder / "crowd-empty.csv").write_text("")
    (folder / "crowd-latin1.csv").write_bytes("task,worker,label\n1,é,x\n".encode("latin-1") + b"\xff\xfe")
    (folder / "crowd-header-only.csv").write_text("task,worker,label\n")
    (folder / "crowd-ok.csv").write_text("task,worker,label\n1,a,x\n1,b,x\n")
    return folder


# ------------------------------------------------------------------ how state is compared


def state(media_root: Path) -> dict[str, Any]:
    counts = {
        model._meta.label: model.objects.count()
        for model in apps.get_models()
        if model._meta.app_label in {"tasks", "verification", "django_q"}
    }
    files = sorted(str(p.relative_to(media_root)) for p in media_root.rglob("*") if p.is_file())
    return {"counts": counts, "files": files}


def command_error(*args: str) -> str:
    err, out = io.StringIO(), io.StringIO()
    saved = sys.stderr
    sys.stderr = err
    try:
        call_command(*args, stdout=out)
    except SystemExit as exc:
        assert exc.code not in (0, None), "a bad input must exit non-zero"
    else:
        pytest.fail(f"{args} succeeded on bad input: {out.getvalue()[-300:]}")
    finally:
        sys.stderr = saved
    message = err.getvalue()
    assert message.startswith("error: ") and message.count("\n") == 1, message
    return message


# ------------------------------------------------------------------ files through the commands

IMAGERY_CASES = [
    ("corrupt GeoTIFF", ["{geotiff}/corrupt.tif"]),
    ("no CRS", ["{geotiff}/rotated.tif"]),
    ("zero-byte file", ["{corpus}/empty.tif"]),
    ("text renamed .tif", ["{corpus}/notes.tif"]),
    ("PNG renamed .tif", ["{corpus}/picture.tif"]),
    ("truncated GeoTIFF", ["{corpus}/half.tif"]),
    ("enormous dimensions in the header", ["{corpus}/huge.tif"]),
    ("missing file", ["{corpus}/nope.tif"]),
    ("tile size too small", ["{corpus}/good.tif", "--tile-size", "8"]),
    ("overlap not below tile size", ["{corpus}/good.tif", "--overlap", "256"]),
    ("AOI not JSON", ["{corpus}/good.tif", "--aoi", "{corpus}/aoi-invalid.geojson"]),
    ("AOI a point", ["{corpus}/good.tif", "--aoi", "{corpus}/aoi-point.geojson"]),
    ("AOI far away", ["{corpus}/good.tif", "--aoi", "{corpus}/aoi-far.geojson"]),
    ("AOI empty", ["{corpus}/good.tif", "--aoi", "{corpus}/aoi-empty.geojson"]),
    ("pair that does not overlap", ["{geotiff}/RGB.byte.tif", "--after", "{corpus}/elsewhere.tif"]),
    ("after file corrupt", ["{geotiff}/RGB.byte.tif", "--after", "{geotiff}/corrupt.tif"]),
]

VIDEO_CASES = [
    ("zero-byte video", "empty.mp4"),
    ("truncated MP4", "truncated.mp4"),
    ("audio only", "audio.m4a"),
    ("image renamed .mp4", "picture.mp4"),
    ("text renamed .mp4", "notes.mp4"),
    ("absurd resolution in the header", "giant.mp4"),
]

CSV_CASES = [
    ("missing columns", ["--input", "{corpus}/crowd-missing-columns.csv"]),
    ("empty file", ["--input", "{corpus}/crowd-empty.csv"]),
    ("not UTF-8", ["--input", "{corpus}/crowd-latin1.csv"]),
    ("no answers", ["--input", "{corpus}/crowd-header-only.csv"]),
    ("unknown method", ["--input", "{corpus}/crowd-ok.csv", "--method", "telepathy"]),
    ("missing gold file", ["--input", "{corpus}/crowd-ok.csv", "--gold", "{corpus}/nope.csv"]),
]


def _fill(args: list[str], corpus: Path) -> list[str]:
    return [a.format(geotiff=GEOTIFF, corpus=corpus) for a in args]


@pytest.mark.parametrize("name, args", IMAGERY_CASES, ids=[c[0] for c in IMAGERY_CASES])
def test_bad_imagery_is_refused_and_changes_nothing(name, args, corpus, _isolated_media) -> None:
    before = state(_isolated_media)
    command_error("ingest_imagery", "--campaign", "bad-imagery", *_fill(args, corpus))
    assert state(_isolated_media) == before


@pytest.mark.parametrize("name, filename", VIDEO_CASES, ids=[c[0] for c in VIDEO_CASES])
def test_bad_video_is_refused_and_changes_nothing(name, filename, corpus, _isolated_media) -> None:
    before = state(_isolated_media)
    command_error("ingest_video", "--campaign", "bad-video", str(corpus / filename))
    assert state(_isolated_media) == before


@pytest.mark.parametrize("name, args", CSV_CASES, ids=[c[0] for c in CSV_CASES])
def test_bad_crowd_csv_is_refused_and_writes_no_output(name, args, corpus, tmp_path, _isolated_media) -> None:
    before = state(_isolated_media)
    output = tmp_path / "consensus.csv"
    command_error("aggregate", *_fill(args, corpus), "--output", str(output))
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []
    assert state(_isolated_media) == before


# ------------------------------------------------------------------ question sets

BAD_QUESTION_SETS = [
    ("not an object", ["damage"]),
    ("no questions", {"primary": "damage", "questions": []}),
    ("primary missing", {"primary": "x", "questions": [{"key": "a", "type": "text", "text": "t"}]}),
    (
        "duplicate keys",
        {
            "primary": "a",
            "questions": [
                {
                    "key": "a",
                    "type": "single",
                    "text": "t",
                    "choices": [{"value": "x", "label": "X"}, {"value": "y", "label": "Y"}],
                },
                {"key": "a", "type": "text", "text": "t"},
            ],
        },
    ),
    ("unknown type", {"primary": "a", "questions": [{"key": "a", "type": "slider", "text": "t"}]}),
    (
        "choice without label",
        {
            "primary": "a",
            "questions": [
                {"key": "a", "type": "single", "text": "t", "choices": [{"value": "x"}, {"value": "y"}]}
            ],
        },
    ),
    ("primary is free text", {"primary": "a", "questions": [{"key": "a", "type": "text", "text": "t"}]}),
    (
        "multiple primary with 7 options",
        {
            "primary": "a",
            "questions": [
                {
                    "key": "a",
                    "type": "multiple",
                    "text": "t",
                    "choices": [{"value": f"o{n}", "label": f"O{n}"} for n in range(7)],
                }
            ],
        },
    ),
    (
        "multiple primary option with +",
        {
            "primary": "a",
            "questions": [
                {
                    "key": "a",
                    "type": "multiple",
                    "text": "t",
                    "choices": [{"value": "fire+smoke", "label": "F"}, {"value": "people", "label": "P"}],
                }
            ],
        },
    ),
]


@pytest.mark.parametrize("name, question_set", BAD_QUESTION_SETS, ids=[c[0] for c in BAD_QUESTION_SETS])
def test_bad_question_set_is_refused_and_creates_no_campaign(name, question_set, _isolated_media) -> None:
    from tasks.questions import QuestionSetError
    from tasks.services import campaign_create

    before = state(_isolated_media)
    with pytest.raises(QuestionSetError) as error:
        campaign_create(slug="bad-questions", title="Bad", kind="imagery", question_set=question_set)
    assert "\n" not in str(error.value)
    assert state(_isolated_media) == before


# ------------------------------------------------------------------ answers through the API

BAD_ANSWERS = [
    ("answer not an object", {"answer": ["destroyed"]}),
    ("unknown choice", {"answer": {"damage": "flattened"}}),
    ("missing primary", {"answer": {"note": "hm"}}),
    ("unknown question", {"answer": {"damage": "intact", "colour": "red"}}),
    ("points not pairs", {"answer": {"damage": "destroyed", "marks": [[1, 2, 3]]}}),
    ("points outside the tile", {"answer": {"damage": "destroyed", "marks": [[9999, 10]]}}),
    ("text with NUL", {"answer": {"damage": "intact", "note": "a\u0000b"}}),
    ("text too long", {"answer": {"damage": "intact", "note": "x" * 6000}}),
    ("client_id not a uuid", {"answer": {"damage": "intact"}, "client_id": "abc"}),
    ("negative duration", {"answer": {"damage": "intact"}, "duration_ms": -5}),
]


@pytest.mark.parametrize("name, body", BAD_ANSWERS, ids=[c[0] for c in BAD_ANSWERS])
def test_bad_answer_is_400_and_changes_nothing(name, body, _isolated_media) -> None:
    from tests.factories import CampaignFactory, TaskFactory

    campaign = CampaignFactory(slug="answers")
    TaskFactory(campaign=campaign)
    client = Client()
    task_id = client.post("/api/v1/campaigns/answers/next-task").json()["task"]["id"]
    before = state(_isolated_media)
    payload = {"client_id": str(uuid.uuid4()), **body}
    response = client.post(f"/api/v1/tasks/{task_id}/answers", payload, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"]
    assert state(_isolated_media) == before


def test_the_corpus_has_at_least_thirty_cases() -> None:
    total = len(IMAGERY_CASES) + len(VIDEO_CASES) + len(CSV_CASES) + len(BAD_QUESTION_SETS) + len(BAD_ANSWERS)
    assert total >= 30
