"""Tests for the pure video core (tasks/video.py) on videos generated with known shot boundaries."""

from __future__ import annotations

import itertools
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from fixtures.synthetic_video import (
    DEFAULT_SPEC,
    make_altered_copy,
    make_audio_only,
    make_video,
)
from tasks.video import (
    DuplicateMatch,
    VideoError,
    detect_shots,
    dhash,
    extract_keyframes,
    find_near_duplicates,
    hamming,
    is_near_uniform,
    phash,
    probe_video,
    render_browser_rendition,
)

TOLERANCE_SECONDS = 0.25
SMALL = (160, 120)


def _cut(shots: list[dict]) -> list[dict]:
    return [shots[0], *({"transition": "cut", **shot} for shot in shots[1:])]


@pytest.fixture(scope="module")
def known_video(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The default spec: hand-held shot, cut, pan, cut, moving blocks, dissolve, flash, fade, long static."""
    path = tmp_path_factory.mktemp("video") / "known.mp4"
    return make_video(path, spec=DEFAULT_SPEC, size=SMALL)


@pytest.fixture(scope="module")
def known_detection(known_video: dict):
    return detect_shots(known_video["path"])


@pytest.fixture(scope="module")
def small_video(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp("video") / "small.mp4"
    spec = _cut(
        [{"kind": "texture", "seconds": 1.0, "seed": 1}, {"kind": "texture", "seconds": 1.0, "seed": 2}]
    )
    return make_video(path, spec=spec, size=SMALL)


def _nearest(value: float, candidates: list[float]) -> float:
    return min(abs(value - c) for c in candidates) if candidates else float("inf")


def _assert_one_line_error(path: Path, *words: str) -> None:
    with pytest.raises(VideoError) as caught:
        probe_video(path)
    message = str(caught.value)
    assert "\n" not in message and message
    for word in words:
        assert word in message.lower()


# --- shot detection -----------------------------------------------------------------------------------


def test_every_known_boundary_is_found_within_a_quarter_second(known_video: dict, known_detection) -> None:
    for boundary in known_video["boundaries_seconds"]:
        assert _nearest(boundary, known_detection.cuts_seconds) <= TOLERANCE_SECONDS, (
            boundary,
            known_detection.transitions,
        )


def test_pan_flash_and_hand_held_motion_give_no_false_cut(known_video: dict, known_detection) -> None:
    false_cuts = [
        cut
        for cut in known_detection.cuts_seconds
        if _nearest(cut, known_video["boundaries_seconds"]) > TOLERANCE_SECONDS
    ]
    assert false_cuts == []


def test_dissolve_and_fade_boundaries_sit_at_the_transition_midpoint(known_detection) -> None:
    def kind_near(seconds: float) -> str:
        return min(known_detection.transitions, key=lambda t: abs(t["seconds"] - seconds))["kind"]

    assert kind_near(9.0) == "dissolve"
    assert kind_near(12.5) == "black"


def test_long_static_shot_is_split_by_forced_boundaries(known_video: dict, known_detection) -> None:
    last_cut = known_video["boundaries_seconds"][-1]  # the 12 s static shot starts here
    pieces = [s for s in known_detection.segments if s[0] >= last_cut - TOLERANCE_SECONDS]
    assert len(pieces) == 2
    assert all(end - start <= 10.0 for start, end in known_detection.segments)


def test_segments_cover_the_video_without_gaps(known_video: dict, known_detection) -> None:
    segments = known_detection.segments
    assert segments[0][0] == 0.0
    assert segments[-1][1] == pytest.approx(known_video["duration"], abs=0.05)
    for (_, end), (start, _) in itertools.pairwise(segments):
        assert end == start


def test_shorter_max_segment_gives_more_segments(small_video: dict) -> None:
    detection = detect_shots(small_video["path"], max_segment_seconds=0.5)
    assert all(end - start <= 0.5 + 1e-6 for start, end in detection.segments)
    assert len(detection.segments) == 4


def test_progress_reports_completion(small_video: dict) -> None:
    reported: list[float] = []
    detect_shots(small_video["path"], progress=reported.append)
    assert reported[-1] == 1.0


def test_variable_frame_rate_boundaries_use_presentation_times(tmp_path: Path) -> None:
    spec = _cut([{"kind": "texture", "seconds": 2.5, "seed": s} for s in (31, 32, 33)])
    video = make_video(tmp_path / "vfr.mp4", spec=spec, size=SMALL, codec="libx264", vfr=True)
    detection = detect_shots(video["path"])
    assert len(detection.cuts_seconds) == 2
    for boundary in video["boundaries_seconds"]:
        assert _nearest(boundary, detection.cuts_seconds) <= TOLERANCE_SECONDS
    assert probe_video(video["path"])["variable_frame_rate"] is True


# --- keyframes ------------------------------------------------------------------------------------------


def test_keyframes_skip_black_frames_at_the_start_of_a_segment(tmp_path: Path) -> None:
    spec = _cut(
        [
            {"kind": "texture", "seconds": 1.0, "seed": 41},
            {"kind": "texture", "seconds": 3.0, "seed": 42, "black_lead_seconds": 1.4},
        ]
    )
    video = make_video(tmp_path / "black.mp4", spec=spec, size=SMALL)
    keyframes = extract_keyframes(video["path"], 1.0, 4.0)
    assert len(keyframes) == 3
    assert not any(k.blank for k in keyframes)
    assert all(k.time_seconds >= 2.4 - 0.05 for k in keyframes)


def test_keyframes_are_full_resolution_jpegs_spread_over_the_segment(small_video: dict) -> None:
    keyframes = extract_keyframes(small_video["path"], 0.0, 2.0, count=3)
    times = [k.time_seconds for k in keyframes]
    assert times == sorted(times) and times[0] < 0.67 and times[-1] >= 1.33
    image = cv2.imdecode(np.frombuffer(keyframes[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape[:2] == (SMALL[1], SMALL[0]) == (keyframes[0].height, keyframes[0].width)
    assert len(keyframes[0].dhash) == len(keyframes[0].phash) == 16
    assert keyframes[0].sharpness > 0


# --- hashes and near duplicates -----------------------------------------------------------------------


def test_uniform_frames_are_flagged_and_textured_frames_are_not() -> None:
    rng = np.random.default_rng(0)
    assert is_near_uniform(np.full((120, 160), 3, np.uint8))
    assert is_near_uniform(rng.integers(250, 256, size=(120, 160), dtype=np.uint8))
    assert not is_near_uniform(rng.integers(0, 256, size=(120, 160), dtype=np.uint8))


def test_hashes_are_64_bit_and_stable_under_rescaling() -> None:
    rng = np.random.default_rng(1)
    image = np.full((240, 320), 90, np.uint8)
    for _ in range(30):
        x, y = (int(v) for v in rng.integers(0, 300, size=2))
        cv2.rectangle(image, (x, y % 220), (x + 40, y % 220 + 25), int(rng.integers(0, 256)), -1)
    half = cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA)
    assert 0 <= dhash(image) < 2**64 and 0 <= phash(image) < 2**64
    assert hamming(dhash(image), dhash(half)) <= 4
    assert hamming(phash(image), phash(half)) <= 4
    assert hamming(0b1011, 0b0001) == 2


def _hashes(path: str, segments: list[tuple[float, float]]) -> list[tuple[tuple[float, float], int, int]]:
    rows = []
    for start, end in segments:
        for keyframe in extract_keyframes(path, start, end):
            rows.append(((start, end), int(keyframe.dhash, 16), int(keyframe.phash, 16)))
    return rows


@pytest.fixture(scope="module")
def duplicate_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list]:
    spec = _cut(
        [
            {"kind": "texture", "seconds": 2.0, "seed": 51},
            {"kind": "texture", "seconds": 2.0, "seed": 52},
            {"kind": "blocks", "seconds": 2.0, "seed": 53},
            {"kind": "texture", "seconds": 2.0, "seed": 54},
        ]
    )
    video = make_video(tmp_path_factory.mktemp("dup") / "original.mp4", spec=spec)
    segments = [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0)]
    return video["path"], _hashes(video["path"], segments)


def test_reencoded_rescaled_cropped_copy_matches_the_right_time_range(
    tmp_path: Path, duplicate_source: tuple[str, list]
) -> None:
    original, index = duplicate_source
    copy = make_altered_copy(
        original, tmp_path / "copy.mp4", scale=0.5, crop_fraction=0.03, start_seconds=2.0, end_seconds=6.0
    )
    query_rows = _hashes(copy["path"], [(0.0, 2.0), (2.0, 4.0)])
    matches = find_near_duplicates([(d, p) for _, d, p in query_rows], index)
    best: dict[int, DuplicateMatch] = {}
    for match in matches:  # sorted by query then distance: the first per query is the best
        best.setdefault(match.query_index, match)
    assert set(best) == set(range(len(query_rows)))
    for query_index, match in best.items():
        copy_start = query_rows[query_index][0][0]
        assert match.match_key == (copy_start + 2.0, copy_start + 4.0)


def test_unrelated_video_does_not_match(tmp_path: Path, duplicate_source: tuple[str, list]) -> None:
    _, index = duplicate_source
    spec = _cut(
        [{"kind": kind, "seconds": 2.0, "seed": 60 + n} for n, kind in enumerate(["texture", "blocks"])]
    )
    other = make_video(tmp_path / "other.mp4", spec=spec)
    query_rows = _hashes(other["path"], [(0.0, 2.0), (2.0, 4.0)])
    assert find_near_duplicates([(d, p) for _, d, p in query_rows], index) == []


def test_flat_frame_hashes_never_match_each_other() -> None:
    black = np.zeros((120, 160), np.uint8)
    query = [(dhash(black), phash(black))]
    assert find_near_duplicates(query, [("other", dhash(black), phash(black))]) == []


# --- metadata -------------------------------------------------------------------------------------------


def test_probe_reads_duration_fps_and_resolution(small_video: dict) -> None:
    info = probe_video(small_video["path"])
    assert info["duration_seconds"] == pytest.approx(2.0, abs=0.05)
    assert info["fps"] == pytest.approx(25.0)
    assert (info["width"], info["height"]) == SMALL
    assert info["frame_count"] == 50
    assert info["variable_frame_rate"] is False
    assert info["audio_codec"] is None and info["video_codec"] == "mpeg4"
    assert info["rotation"] == 0


def test_probe_reads_creation_time_encoder_and_location_tags(tmp_path: Path) -> None:
    tags = {
        "creation_time": "2023-05-01T10:00:00.000000Z",
        "com.apple.quicktime.location.ISO6709": "+48.8577+002.2950+035.000/",
        "com.apple.quicktime.software": "16.4.1",
    }
    spec = [{"kind": "texture", "seconds": 1.0, "seed": 1}]
    video = make_video(tmp_path / "tagged.mov", spec=spec, size=SMALL, codec="mpeg4", tags=tags, audio=True)
    info = probe_video(video["path"])
    assert info["creation_time"] == "2023-05-01T10:00:00.000000Z"
    assert info["location"] == "+48.8577+002.2950+035.000/"
    assert info["encoder"].startswith("Lavf")  # FFmpeg's muxer always stamps its own encoder tag
    assert info["tags"]["com.apple.quicktime.software"] == "16.4.1"
    assert info["audio_codec"] == "aac"


def test_rotation_from_the_display_matrix_turns_keyframes_upright(tmp_path: Path) -> None:
    spec = [{"kind": "texture", "seconds": 1.0, "seed": 1}]
    video = make_video(tmp_path / "portrait.mp4", spec=spec, size=SMALL, codec="libx264", rotation=90)
    info = probe_video(video["path"])
    assert info["rotation"] == 270  # clockwise, like the legacy `rotate` tag
    assert (info["display_width"], info["display_height"]) == (SMALL[1], SMALL[0])
    keyframe = extract_keyframes(video["path"], 0.0, 1.0, count=1)[0]
    assert (keyframe.width, keyframe.height) == (SMALL[1], SMALL[0])


# --- bad inputs -----------------------------------------------------------------------------------------


def test_zero_byte_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _assert_one_line_error(empty, "empty")


def test_truncated_mp4_is_refused(tmp_path: Path, small_video: dict) -> None:
    data = Path(small_video["path"]).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    _assert_one_line_error(truncated, "truncated")


def test_truncated_faststart_mp4_is_refused(tmp_path: Path) -> None:
    spec = [{"kind": "texture", "seconds": 1.0, "seed": 1}]
    video = make_video(tmp_path / "h264.mp4", spec=spec, size=SMALL, codec="libx264")
    rendition = render_browser_rendition(video["path"], tmp_path / "faststart.mp4")
    data = Path(rendition["path"]).read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # the index is in the first half
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    _assert_one_line_error(truncated, "truncated")


def test_audio_only_file_is_refused(tmp_path: Path) -> None:
    _assert_one_line_error(Path(make_audio_only(tmp_path / "voice.m4a")), "audio only")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_image_renamed_mp4_is_refused(tmp_path: Path, suffix: str) -> None:
    image = tmp_path / f"photo{suffix}"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, size=(60, 80, 3), dtype=np.uint8))
    renamed = tmp_path / "photo.mp4"
    shutil.copy(image, renamed)
    _assert_one_line_error(renamed, "not a video")


def _patch_box(source: str, destination: Path, box: bytes, patch) -> Path:
    data = bytearray(Path(source).read_bytes())
    patch(data, data.find(box) - 4)  # offset of the box's size field
    destination.write_bytes(bytes(data))
    return destination


def test_header_claiming_an_absurd_resolution_is_refused(tmp_path: Path, small_video: dict) -> None:
    def giant_sample_entry(data: bytearray, stsd: int) -> None:
        entry = stsd + 16  # box header (8) + version/flags (4) + entry count (4)
        struct.pack_into(">HH", data, entry + 32, 60000, 60000)

    crafted = _patch_box(small_video["path"], tmp_path / "giant.mp4", b"stsd", giant_sample_entry)
    _assert_one_line_error(crafted, "absurd resolution")


def test_header_claiming_an_absurd_duration_is_refused(tmp_path: Path, small_video: dict) -> None:
    def week_long(data: bytearray, mvhd: int) -> None:
        timescale = struct.unpack_from(">I", data, mvhd + 20)[0]
        struct.pack_into(">I", data, mvhd + 24, timescale * 7 * 24 * 3600)

    crafted = _patch_box(small_video["path"], tmp_path / "week.mp4", b"mvhd", week_long)
    _assert_one_line_error(crafted, "absurd duration")


def test_missing_file_is_refused(tmp_path: Path) -> None:
    _assert_one_line_error(tmp_path / "nope.mp4", "no such file")


# --- browser rendition ----------------------------------------------------------------------------------


def test_browser_rendition_is_small_faststart_and_keeps_times(tmp_path: Path, known_video: dict) -> None:
    rendition = render_browser_rendition(known_video["path"], tmp_path / "web.mp4", max_height=96)
    assert rendition["mime"] == "video/mp4" and rendition["codec"] == "h264"
    assert rendition["height"] == 96 and rendition["width"] == 128
    info = probe_video(rendition["path"])
    assert info["video_codec"] == "h264"
    assert info["duration_seconds"] == pytest.approx(known_video["duration"], abs=0.1)
    data = Path(rendition["path"]).read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")


def test_browser_rendition_keeps_the_audio(tmp_path: Path) -> None:
    spec = [{"kind": "texture", "seconds": 1.0, "seed": 1}]
    video = make_video(tmp_path / "sound.mp4", spec=spec, size=SMALL, codec="mpeg4", audio=True)
    rendition = render_browser_rendition(video["path"], tmp_path / "web.mp4")
    assert probe_video(rendition["path"])["audio_codec"] == "aac"


def test_standard_definition_720x480_video_is_analysed(tmp_path: Path) -> None:
    # 720x480 (NTSC/DVD) gives a 64x42 analysis frame whose chroma planes do not fill whole rows.
    path = tmp_path / "ntsc.mp4"
    make_video(
        path,
        spec=[
            {"kind": "texture", "seconds": 1.5, "seed": 1},
            {"kind": "blocks", "seconds": 1.5, "seed": 2, "transition": "cut"},
        ],
        size=(720, 480),
    )
    detection = detect_shots(path)
    assert len(detection.cuts_seconds) == 1
    assert abs(detection.cuts_seconds[0] - 1.5) <= 0.25
