"""Pure video code for video sources: metadata, shot detection, keyframes, perceptual hashes, renditions.

No Django here: every function takes a path (or arrays) and returns plain data, so it can be tested and
benchmarked alone. Decoding uses PyAV (which bundles FFmpeg), image work uses OpenCV and numpy.

Times are presentation times in seconds from the first video frame (PTS * time_base - start), so variable
frame rate footage is timed correctly and matches `#t=start,end` playback of the browser rendition.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.video.reformatter
import cv2
import numpy as np

from tasks.messages import N_, Explained

__all__ = [
    "DuplicateMatch",
    "Keyframe",
    "ShotDetection",
    "VideoError",
    "detect_shots",
    "dhash",
    "extract_keyframes",
    "find_near_duplicates",
    "hamming",
    "is_near_uniform",
    "phash",
    "probe_video",
    "render_browser_rendition",
]

Progress = Callable[[float], None]


class VideoError(Explained):
    """A video a user supplied cannot be used; the message is one readable line (a template and its
    figures: tasks/messages.py)."""


# ---------------------------------------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------------------------------------

_IMAGE_SIGNATURES: list[tuple[bytes, str]] = [
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF document"),
]


def _sniff_non_video(head: bytes) -> str | None:
    """Name the kind of file when its first bytes say it is an image or a document, not a video."""
    for signature, name in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypavif", b"ftypmif1"):
        return "HEIF/AVIF image"
    return None


_CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _parse_moov(data: bytes, header: dict[str, Any]) -> None:
    """Collect declared durations and picture sizes from a `moov` box (mvhd, tkhd, mdhd, stsd)."""
    offset = 0
    while offset + 8 <= len(data):
        box_size, box_type = struct.unpack(">I4s", data[offset : offset + 8])
        header_size = 8
        if box_size == 1 and offset + 16 <= len(data):
            box_size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
            header_size = 16
        if box_size < header_size or offset + box_size > len(data):
            return
        body = data[offset + header_size : offset + box_size]
        if box_type in _CONTAINER_BOXES:
            _parse_moov(body, header)
        elif box_type in (b"mvhd", b"mdhd") and len(body) >= 32:
            if body[0] == 1:
                timescale, duration = struct.unpack(">IQ", body[20:32])
                unknown = duration == 2**64 - 1
            else:
                timescale, duration = struct.unpack(">II", body[12:20])
                unknown = duration == 2**32 - 1
            if timescale and not unknown:
                header["durations"].append(duration / timescale)
        elif box_type == b"tkhd" and len(body) >= 84:
            at = 76 if body[0] == 0 else 88
            if len(body) >= at + 8:
                width, height = struct.unpack(">II", body[at : at + 8])
                header["sizes"].append((width >> 16, height >> 16))
        elif box_type == b"stsd" and len(body) >= 8 + 36:
            entry = body[8:]
            # A visual sample entry: 8 header, 6 reserved, 2 index, 16 pre-defined, then width, height.
            width, height = struct.unpack(">HH", entry[32:36])
            if entry[4:8] not in (b"mp4a", b"ac-3", b"ec-3", b"Opus", b"fLaC", b"alac", b"lpcm"):
                header["sizes"].append((width, height))
        offset += box_size


def _check_iso_bmff(path: Path, size: int) -> dict[str, Any] | None:
    """Walk an MP4/MOV file's boxes (cheap, no decoding): refuse truncation, read the declared header.

    A box that claims more bytes than the file holds, or a file without a `moov` box, is truncated: the
    usual result of an interrupted upload or copy. Returns the durations and picture sizes the header
    declares, so absurd values are refused before FFmpeg allocates or decodes anything.
    """
    header: dict[str, Any] = {"durations": [], "sizes": []}
    with path.open("rb") as handle:
        head = handle.read(12)
        if len(head) < 8 or head[4:8] not in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
            return None
        offset, seen = 0, set()
        while offset + 8 <= size:
            handle.seek(offset)
            box_header = handle.read(16)
            box_size, box_type = struct.unpack(">I4s", box_header[:8])
            header_size = 8
            if box_size == 1 and len(box_header) >= 16:
                box_size = struct.unpack(">Q", box_header[8:16])[0]
                header_size = 16
            elif box_size == 0:
                box_size = size - offset
            if box_size < 8:
                raise VideoError(N_("the MP4 file is corrupt (invalid box structure)"))
            if offset + box_size > size:
                kind = box_type.decode("latin-1")
                raise VideoError(
                    N_(
                        "the MP4 file is truncated: its '%(box)s' box needs %(needs)d bytes but the file has only %(size)d"
                    ),
                    box=kind,
                    needs=offset + box_size,
                    size=size,
                )
            if box_type == b"moov" and box_size <= 256 * 1024 * 1024:
                handle.seek(offset + header_size)
                _parse_moov(handle.read(box_size - header_size), header)
            seen.add(box_type)
            offset += box_size
        if b"moov" not in seen:
            raise VideoError(N_("the MP4 file is truncated or incomplete: it has no 'moov' index box"))
    return header


def _check_declared(header: dict[str, Any] | None, max_pixels: int, max_duration_seconds: float) -> None:
    if not header:
        return
    for width, height in header["sizes"]:
        if width * height > max_pixels:
            raise VideoError(
                N_("the header claims an absurd resolution (%(width)dx%(height)d); refusing to decode"),
                width=width,
                height=height,
            )
    for duration in header["durations"]:
        if duration > max_duration_seconds:
            raise VideoError(
                N_(
                    "the header claims an absurd duration (%(seconds).0f s, the limit is %(limit).0f s); refusing to decode"
                ),
                seconds=duration,
                limit=max_duration_seconds,
            )


def _open(
    path: str | Path, *, max_pixels: int | None = None, max_duration_seconds: float | None = None
) -> tuple[Path, Any]:
    path = Path(path)
    if not path.is_file():
        raise VideoError(N_("no such file: %(name)s"), name=path.name)
    size = path.stat().st_size
    if size == 0:
        raise VideoError(N_("the file is empty (0 bytes)"))
    with path.open("rb") as handle:
        head = handle.read(32)
    kind = _sniff_non_video(head)
    if kind:
        raise VideoError(N_("this is a %(kind)s file, not a video"), kind=kind)
    header = _check_iso_bmff(path, size)
    if max_pixels is not None and max_duration_seconds is not None:
        _check_declared(header, max_pixels, max_duration_seconds)
    try:
        container = av.open(str(path), metadata_errors="replace")
    except av.FFmpegError as error:
        raise VideoError(N_("not a readable video file (%(reason)s)"), reason=_ffmpeg_reason(error)) from None
    format_name = container.format.name or ""
    if format_name.endswith("_pipe") or format_name in {"image2", "gif", "apng", "webp"}:
        container.close()
        raise VideoError(
            N_("this is an image (%(kind)s), not a video"), kind=format_name.removesuffix("_pipe")
        )
    return path, container


def _ffmpeg_reason(error: Exception) -> str:
    reason = getattr(error, "strerror", None) or str(error)
    return str(reason).splitlines()[0].strip().rstrip(".").lower()


def _video_stream(container: Any) -> Any:
    if not container.streams.video:
        if container.streams.audio:
            raise VideoError(N_("the file contains audio only: there is no video stream"))
        raise VideoError(N_("the file contains no video stream"))
    # Cover art in audio files is an attached picture, not footage.
    streams = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not streams:
        raise VideoError(N_("the file contains audio only: its only picture is cover art"))
    return streams[0]


def _stream_start(stream: Any) -> int:
    return stream.start_time if stream.start_time is not None else 0


def _declared_duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _rotation_clockwise(frame_rotation: float | None, tag: str | None) -> int:
    """Degrees to turn the stored picture clockwise for display (the legacy `rotate` tag convention)."""
    if frame_rotation:
        # FFmpeg's display matrix angle is counter-clockwise.
        return round(-frame_rotation / 90.0) * 90 % 360
    if tag:
        try:
            return round(float(tag) / 90.0) * 90 % 360
        except ValueError:
            return 0
    return 0


def probe_video(
    path: str | Path, *, max_pixels: int = 8192 * 8192, max_duration_seconds: float = 6 * 3600
) -> dict[str, Any]:
    """Read a video's metadata (JSON-able), refusing files that are not usable videos.

    Header values are checked before anything is decoded, so a crafted file claiming an absurd size or
    duration costs nothing. Then the first frames are decoded to prove the file is playable.
    """
    path, container = _open(path, max_pixels=max_pixels, max_duration_seconds=max_duration_seconds)
    with container:
        stream = _video_stream(container)
        context = stream.codec_context
        width, height = int(context.width or 0), int(context.height or 0)
        if width <= 0 or height <= 0:
            raise VideoError(N_("the video stream has no picture size (corrupt header)"))
        if width * height > max_pixels or width > 65536 or height > 65536:
            raise VideoError(
                N_("the header claims an absurd resolution (%(width)dx%(height)d); refusing to decode"),
                width=width,
                height=height,
            )
        duration = _declared_duration(container, stream)
        if duration is not None and (duration > max_duration_seconds or duration < 0):
            raise VideoError(
                N_(
                    "the header claims an absurd duration (%(seconds).0f s, the limit is %(limit).0f s); refusing to decode"
                ),
                seconds=duration,
                limit=max_duration_seconds,
            )
        if container.duration is not None and container.duration / av.time_base > max_duration_seconds:
            raise VideoError(
                N_(
                    "the header claims an absurd duration (%(seconds).0f s, the limit is %(limit).0f s); refusing to decode"
                ),
                seconds=container.duration / av.time_base,
                limit=max_duration_seconds,
            )
        audio = container.streams.audio[0] if container.streams.audio else None

        tags: dict[str, str] = {}
        for source in (container.metadata, stream.metadata, audio.metadata if audio else {}):
            for key, value in source.items():
                tags.setdefault(str(key), str(value))

        # Presentation times of the first packets (no decoding) tell constant from variable frame rate.
        pts_sample: list[int] = []
        first_frame = None
        stream.thread_type = "AUTO"
        try:
            for packet in container.demux(stream):
                if packet.pts is not None:
                    pts_sample.append(packet.pts)
                if first_frame is None:
                    for frame in packet.decode():
                        first_frame = frame
                        break
                if len(pts_sample) >= 240 and first_frame is not None:
                    break
        except av.FFmpegError as error:
            if first_frame is None:
                reason = _ffmpeg_reason(error)
                raise VideoError(
                    N_("cannot decode the first frames: the file is truncated or corrupt (%(reason)s)"),
                    reason=reason,
                ) from None
        if first_frame is None:
            try:
                for frame in stream.decode(None):
                    first_frame = frame
                    break
            except av.FFmpegError:
                pass
        if first_frame is None:
            raise VideoError(N_("cannot decode the first frames: the file is truncated or corrupt"))

        time_base = stream.time_base or Fraction(1, 1000)
        unique_pts = np.unique(np.asarray(pts_sample, dtype=np.int64)).astype(np.float64)
        deltas = np.diff(unique_pts) * float(time_base)
        variable = False
        if len(deltas) >= 4:
            median = float(np.median(deltas))
            variable = bool(
                median > 0 and np.mean(np.abs(deltas - np.float64(median)) > 0.15 * median) > 0.05
            )

        fps = float(stream.average_rate) if stream.average_rate else 0.0
        if duration is None and len(deltas):
            duration = float(np.sum(deltas))
        if not fps and duration and stream.frames:
            fps = stream.frames / duration
        if not fps and len(deltas):
            fps = 1.0 / float(np.mean(deltas))
        frame_count = int(stream.frames) if stream.frames else round((duration or 0) * fps)

        rotation = _rotation_clockwise(getattr(first_frame, "rotation", 0), stream.metadata.get("rotate"))
        display_width, display_height = (height, width) if rotation in (90, 270) else (width, height)
        encoder = tags.get("encoder") or tags.get("com.apple.quicktime.software") or tags.get("software")
        location = tags.get("com.apple.quicktime.location.ISO6709") or tags.get("location")
        return {
            "duration_seconds": round(float(duration or 0.0), 6),
            "fps": round(fps, 6),
            "variable_frame_rate": variable,
            "width": width,
            "height": height,
            "display_width": display_width,
            "display_height": display_height,
            "rotation": rotation,
            "video_codec": context.name,
            "pixel_format": context.format.name if context.format else None,
            "audio_codec": audio.codec_context.name if audio else None,
            "container": container.format.name,
            "bit_rate": int(container.bit_rate or 0) or None,
            "frame_count": frame_count,
            "tags": tags,
            "encoder": encoder,
            "creation_time": tags.get("creation_time") or tags.get("com.apple.quicktime.creationdate"),
            "location": location,
            "file_size": path.stat().st_size,
        }


# ---------------------------------------------------------------------------------------------------------
# Shot detection
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ShotDetection:
    """Shot boundaries of a video and the segments (micro-tasks) cut from them."""

    cuts_seconds: list[float]
    segments: list[tuple[float, float]]
    frames_analysed: int
    analysis_fps: float
    duration_seconds: float = 0.0
    transitions: list[dict[str, Any]] = field(default_factory=list)


_ANALYSIS_WIDTH = 64


def _analysis_size(width: int, height: int) -> tuple[int, int]:
    analysis_height = max(8, round(_ANALYSIS_WIDTH * height / max(width, 1) / 2) * 2)
    return _ANALYSIS_WIDTH, analysis_height


def _iter_frames(path: str | Path, *, width: int | None = None, fmt: str = "yuv420p") -> Iterator[Any]:
    """Decode every video frame with threaded decoding; yields (seconds, frame, stream)."""
    _, container = _open(path)
    with container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        start = _stream_start(stream)
        # A float multiply, not Fraction arithmetic per frame: exact to far below the 1 ms we report.
        time_base = float(stream.time_base)
        fps = float(stream.average_rate or 25)
        index = 0
        try:
            for frame in container.decode(stream):
                pts = frame.pts
                seconds = (pts - start) * time_base if pts is not None else index / fps
                index += 1
                yield seconds, frame, stream
        except av.FFmpegError as error:
            if index == 0:
                raise VideoError(f"cannot decode the video ({_ffmpeg_reason(error)})") from None
            # A damaged tail still leaves the frames decoded so far usable.


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return cv2.norm(a, b, cv2.NORM_L1) / a.size


_PLANAR_420 = {"yuv420p", "yuvj420p"}


def _small_planes(
    frame: Any, size: tuple[int, int], reformatter: Any, out: np.ndarray | None = None
) -> np.ndarray:
    """The Y, U and V planes of a frame shrunk to `size` (Y) and half that (U, V), flattened one after another.

    For 4:2:0 frames (nearly all camera footage) the planes are read in place and shrunk with OpenCV:
    a nearest-neighbour pass to twice the target then a 2x2 area average, four times cheaper than an area
    filter over the full frame and free of the aliasing of plain decimation. The result is written into
    `out` when given (uint8, w*h + 2*(w//2)*(h//2) long), so a stream of frames allocates nothing. Flat,
    not rows: a chroma plane of an odd height (720x480 gives 32x21) does not fill whole rows of width Y.
    """
    width, height = size
    luma, chroma = width * height, (width // 2) * (height // 2)
    if out is None:
        out = np.empty(luma + 2 * chroma, np.uint8)
    if frame.format.name not in _PLANAR_420 or frame.width < 2 * width:
        small = reformatter.reformat(
            frame, width=width, height=height, format="yuv420p", interpolation="AREA"
        )
        for index, plane in enumerate(small.planes[:3]):
            plane_width, plane_height = (width, height) if index == 0 else (width // 2, height // 2)
            start = 0 if index == 0 else luma + (index - 1) * chroma
            pixels: np.ndarray = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
            out[start : start + plane_width * plane_height].reshape(plane_height, plane_width)[:] = pixels[
                :plane_height, :plane_width
            ]
        return out
    # Views of `out` that OpenCV writes into: Y, then U and V.
    targets = (
        out[:luma].reshape(height, width),
        out[luma : luma + chroma].reshape(height // 2, width // 2),
        out[luma + chroma :].reshape(height // 2, width // 2),
    )
    chroma_size = ((frame.width + 1) // 2, (frame.height + 1) // 2)
    for index, (plane, target) in enumerate(zip(frame.planes, targets, strict=False)):
        plane_width, plane_height = (frame.width, frame.height) if index == 0 else chroma_size
        pixels = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:plane_height, :plane_width]
        target_height, target_width = target.shape
        if plane_width >= 4 * target_width:
            pixels = cv2.resize(
                pixels, (2 * target_width, 2 * target_height), interpolation=cv2.INTER_NEAREST
            )
        cv2.resize(pixels, (target_width, target_height), dst=target, interpolation=cv2.INTER_AREA)
    return out


class _ShotAnalyser:
    """Streaming per-frame features over a small ring buffer of downscaled frames.

    - hard cuts: the frame difference compared to the mean of its neighbours (adaptive ratio), so steady
      camera motion, which raises every difference, does not fire;
    - flashes: a spike whose frames shortly after match the frames shortly before is not a cut;
    - hand-held jolts: a spike that a small global shift explains is camera motion, not a cut;
    - dissolves: frames across a window are far apart, yet every frame in between is the linear blend of
      the two ends (camera motion is not linear per pixel, a dissolve is);
    - fades through black: runs of dark, flat frames; the boundary goes at the black point.
    """

    def __init__(
        self,
        fps: float,
        *,
        threshold: float,
        min_content: float = 6.0,
        window: int = 2,
        fade_min: float = 9.0,
        fade_linearity: float = 0.3,
    ) -> None:
        self.threshold = threshold
        self.min_content = min_content
        self.window = window
        self.flash_span = 4
        self.fade_half = max(3, round(0.5 * fps))
        self.fade_min = fade_min
        self.fade_linearity = fade_linearity
        self.lag = max(self.window, self.flash_span)
        self.buffer: deque[np.ndarray] = deque(maxlen=max(2 * self.fade_half + 1, 2 * self.lag + 2))
        self.first_in_buffer = 0
        self.times: list[float] = []
        self.diffs: list[float] = []
        self.dark: list[bool] = []
        self.fade_score: dict[int, float] = {}
        self.hard: list[tuple[int, float]] = []
        self.y_shape: tuple[int, int] = (0, 0)
        self.blend: np.ndarray | None = None  # scratch for `_fade_at`, allocated by OpenCV on first use

    def _frame(self, index: int) -> np.ndarray:
        return self.buffer[index - self.first_in_buffer]

    def add(self, seconds: float, planes: np.ndarray, y_shape: tuple[int, int]) -> None:
        """Take the next frame's flat Y, U, V planes (see `_small_planes`); the planes may be reused after."""
        self.y_shape = y_shape
        j = len(self.times)
        if len(self.buffer) == self.buffer.maxlen:
            # Recycle the float buffer of the frame leaving the ring instead of allocating a new one.
            vector = self.buffer.popleft()
            self.first_in_buffer += 1
            np.copyto(vector, planes, casting="unsafe")
        else:
            vector = planes.astype(np.float32)
        previous = self.buffer[-1] if j else None
        self.buffer.append(vector)
        self.times.append(seconds)
        luma = vector[: y_shape[0] * y_shape[1]]
        # Dark means a mean luma under 28 and a spread under 10; the mean alone rules out most frames.
        dark = False
        if cv2.mean(luma)[0] < 28:
            mean, std = cv2.meanStdDev(luma)
            dark = bool(mean[0, 0] < 28 and std[0, 0] < 10)
        self.dark.append(dark)
        self.diffs.append(_distance(vector, previous) if previous is not None else 0.0)
        k = self.fade_half
        if j >= 2 * k:
            self._fade_at(j - k)
        if j - self.lag >= 1:
            self._hard_at(j - self.lag)

    def finish(self) -> None:
        for i in range(max(1, len(self.times) - self.lag), len(self.times)):
            self._hard_at(i)

    def _fade_at(self, c: int) -> None:
        k = self.fade_half
        before, after = self._frame(c - k), self._frame(c + k)
        span = _distance(before, after)
        if span < self.fade_min:
            return
        # The mean of three residuals must stay under `fade_linearity * span`: stop as soon as the running
        # sum exceeds three times that (camera motion usually fails on the first blend).
        limit = 3 * self.fade_linearity * span
        residual = 0.0
        for fraction in (0.25, 0.5, 0.75):
            offset = round(2 * k * fraction)
            weight = offset / (2 * k)
            blend = self.blend = cv2.addWeighted(before, 1.0 - weight, after, weight, 0.0, dst=self.blend)
            residual += _distance(self._frame(c - k + offset), blend)
            if residual >= limit:
                return
        residual /= 3
        self.fade_score[c] = span * (1 - residual / span)

    def _hard_at(self, i: int) -> None:
        d = self.diffs
        value = d[i]
        if value < self.min_content:
            return
        neighbours = [d[n] for n in range(i - self.window, i + self.window + 1) if n != i and 1 <= n < len(d)]
        baseline = (sum(neighbours) / len(neighbours)) if neighbours else 0.0
        ratio = value / (baseline + 1.0)
        if ratio < self.threshold:
            return
        if self._is_flash(i, value) or self._is_camera_jolt(i, value):
            return
        self.hard.append((i, ratio))

    def _is_flash(self, i: int, value: float) -> bool:
        last = len(self.times) - 1
        lo = max(self.first_in_buffer, i - self.flash_span)
        hi = min(last, i + self.flash_span - 1)
        for a in range(lo, i):
            for b in range(i, hi + 1):
                if b - a >= 2 and _distance(self._frame(a), self._frame(b)) < 0.4 * value:
                    return True
        return False

    def _is_camera_jolt(self, i: int, value: float) -> bool:
        rows, cols = self.y_shape
        shift = max(2, cols // 12)
        previous = self._frame(i - 1)[: rows * cols].reshape(rows, cols)
        current = self._frame(i)[: rows * cols].reshape(rows, cols)
        template = previous[shift:-shift, shift:-shift]
        scores = cv2.matchTemplate(current, template, cv2.TM_SQDIFF)
        compensated = math.sqrt(max(float(scores.min()), 0.0) / template.size)
        centre = math.sqrt(max(float(scores[shift, shift]), 0.0) / template.size)
        return compensated < 0.35 * centre

    def boundaries(self) -> list[tuple[float, str, float]]:
        """Candidate boundaries as (seconds, kind, strength)."""
        times = self.times
        found: list[tuple[float, str, float]] = []
        # Dark runs first: transitions touching them collapse onto the black point.
        dark_spans: list[tuple[int, int]] = []
        i = 0
        while i < len(self.dark):
            if self.dark[i]:
                j = i
                while j + 1 < len(self.dark) and self.dark[j + 1]:
                    j += 1
                if i > 0 and j < len(self.dark) - 1:
                    dark_spans.append((i, j))
                i = j + 1
            else:
                i += 1
        guard = self.fade_half + 1
        claimed: list[tuple[int, int]] = []
        for start, end in dark_spans:
            if times[end] - times[start] <= 3.0:
                middle = (start + end) // 2
                found.append((times[middle], "black", 100.0))
                claimed.append((start - guard, end + guard))

        def unclaimed(index: int) -> bool:
            return not any(lo <= index <= hi for lo, hi in claimed)

        for index, ratio in self.hard:
            if unclaimed(index):
                found.append((times[index], "cut", ratio / self.threshold * 10))
        k = self.fade_half
        for c, score in sorted(self.fade_score.items()):
            window = [self.fade_score.get(n, 0.0) for n in range(c - k, c + k + 1)]
            if score < max(window) or not unclaimed(c):
                continue
            # A dissolve must not straddle a hard cut (those frames already blend nothing).
            if any(abs(c - h) <= k for h, _ in self.hard):
                continue
            found.append((times[c], "dissolve", score / self.fade_min))
        return sorted(found)


def _segments(
    cuts: Sequence[float], duration: float, max_segment_seconds: float
) -> list[tuple[float, float]]:
    edges = [0.0, *cuts, duration]
    segments: list[tuple[float, float]] = []
    for start, end in itertools.pairwise(edges):
        pieces = max(1, math.ceil((end - start) / max_segment_seconds - 1e-9))
        step = (end - start) / pieces
        for n in range(pieces):
            a = start + n * step
            b = end if n == pieces - 1 else start + (n + 1) * step
            segments.append((round(a, 3), round(b, 3)))
    return segments


def detect_shots(
    path: str | Path,
    *,
    max_segment_seconds: float = 10.0,
    min_shot_seconds: float = 0.6,
    threshold: float = 3.0,
    progress: Progress | None = None,
) -> ShotDetection:
    """Find shot boundaries (hard cuts, dissolves, fades through black) and cut the video into segments.

    Frames are decoded with threads and downscaled to 64 px wide in the decoder's scaler; the analysis
    reads the Y, U and V planes directly, so no colour conversion is done. `threshold` is the adaptive
    ratio: how many times larger than its neighbours' a frame difference must be to be a cut.
    """
    if max_segment_seconds <= 0:
        raise ValueError("max_segment_seconds must be positive")
    analyser: _ShotAnalyser | None = None
    declared = None
    last_time = 0.0
    intervals: deque[float] = deque(maxlen=50)
    count = 0
    # One reformatter for the whole run: it keeps its scaler context, frame.reformat() rebuilds one per call.
    reformatter = av.video.reformatter.VideoReformatter()
    planes: np.ndarray | None = None  # one uint8 buffer reused for every frame's shrunk planes
    for seconds, frame, stream in _iter_frames(path):
        if analyser is None:
            fps = float(stream.average_rate or 25)
            analyser = _ShotAnalyser(fps, threshold=threshold)
            size = _analysis_size(frame.width, frame.height)
            y_shape = (size[1], size[0])
            declared = _declared_duration(stream.container, stream)
        planes = _small_planes(frame, size, reformatter, planes)
        analyser.add(seconds, planes, y_shape)
        if count:
            intervals.append(seconds - last_time)
        last_time = seconds
        count += 1
        if progress is not None and count % 250 == 0 and declared:
            progress(min(0.99, seconds / declared))
    if analyser is None or count == 0:
        raise VideoError("the video has no decodable frames")
    analyser.finish()
    frame_interval = float(np.median(intervals)) if intervals else 1 / 25
    duration = round(last_time + frame_interval, 6)

    cuts: list[float] = []
    strengths: list[float] = []
    kinds: list[str] = []
    for seconds, kind, strength in analyser.boundaries():
        if seconds < min_shot_seconds or seconds > duration - min_shot_seconds:
            continue
        if cuts and seconds - cuts[-1] < min_shot_seconds:
            if strength > strengths[-1]:
                cuts[-1], strengths[-1], kinds[-1] = seconds, strength, kind
            continue
        cuts.append(seconds)
        strengths.append(strength)
        kinds.append(kind)
    cuts = [round(c, 3) for c in cuts]
    if progress is not None:
        progress(1.0)
    return ShotDetection(
        cuts_seconds=cuts,
        segments=_segments(cuts, duration, max_segment_seconds),
        frames_analysed=count,
        analysis_fps=round(count / duration, 3) if duration else 0.0,
        duration_seconds=duration,
        transitions=[
            {"seconds": c, "kind": k, "strength": round(s, 2)}
            for c, k, s in zip(cuts, kinds, strengths, strict=True)
        ],
    )


# ---------------------------------------------------------------------------------------------------------
# Perceptual hashes
# ---------------------------------------------------------------------------------------------------------


def _to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


def is_near_uniform(gray: np.ndarray, *, max_std: float = 6.0) -> bool:
    """True for black, white or flat frames (luma std below `max_std`): nothing to show or to hash."""
    gray = _to_gray(gray)
    if gray.shape[0] > 64:
        gray = cv2.resize(
            gray, (64, max(1, int(64 * gray.shape[0] / gray.shape[1]))), interpolation=cv2.INTER_AREA
        )
    return float(np.std(gray)) < max_std


def _bits_to_int(bits: np.ndarray) -> int:
    value = 0
    for bit in bits.ravel():
        value = (value << 1) | int(bool(bit))
    return value


def dhash(gray: np.ndarray) -> int:
    """64-bit difference hash: brightness gradients of a 9x8 thumbnail."""
    small = cv2.resize(_to_gray(gray), (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    return _bits_to_int(small[:, 1:] > small[:, :-1])


def phash(gray: np.ndarray) -> int:
    """64-bit perceptual hash: low 8x8 DCT coefficients of a 32x32 thumbnail compared to their median."""
    small = cv2.resize(_to_gray(gray), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    median = float(np.median(low.ravel()[1:]))
    return _bits_to_int(low > median)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (int(a) ^ int(b)).bit_count()


@dataclass
class DuplicateMatch:
    """A query keyframe that looks like a keyframe of another source."""

    query_index: int
    match_key: object
    distance: int  # dhash distance + phash distance
    dhash_distance: int = 0
    phash_distance: int = 0


def _popcount(values: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    # numpy < 2: the classic SWAR popcount on uint64.
    v = values - ((values >> np.uint64(1)) & np.uint64(0x5555555555555555))
    v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (v * np.uint64(0x0101010101010101)) >> np.uint64(56)


def _informative(hash_value: int) -> bool:
    # All-equal bits come from flat frames: every flat frame would "match" every other.
    return 3 <= int(hash_value).bit_count() <= 61


def find_near_duplicates(
    query: Sequence[tuple[int, int]],
    index: Sequence[tuple[object, int, int]],
    *,
    max_distance: int = 10,
) -> list[DuplicateMatch]:
    """Keyframes of `query` ((dhash, phash) each) that match keyframes in `index` ((key, dhash, phash)).

    A match needs both hashes within `max_distance` bits, which keeps re-encoded, rescaled and slightly
    cropped copies while rejecting unrelated footage. Results are sorted by query index then distance.
    """
    if not query or not index:
        return []
    keys = [entry[0] for entry in index]
    index_d = np.array([int(entry[1]) for entry in index], dtype=np.uint64)
    index_p = np.array([int(entry[2]) for entry in index], dtype=np.uint64)
    usable = np.array([_informative(entry[1]) and _informative(entry[2]) for entry in index])
    matches: list[DuplicateMatch] = []
    for query_index, (query_d, query_p) in enumerate(query):
        if not (_informative(query_d) and _informative(query_p)):
            continue
        d_dist = _popcount(index_d ^ np.uint64(int(query_d))).astype(np.int32)
        p_dist = _popcount(index_p ^ np.uint64(int(query_p))).astype(np.int32)
        hits = np.flatnonzero((d_dist <= max_distance) & (p_dist <= max_distance) & usable)
        total = d_dist[hits] + p_dist[hits]
        for position in hits[np.argsort(total, kind="stable")]:
            matches.append(
                DuplicateMatch(
                    query_index=query_index,
                    match_key=keys[position],
                    distance=int(d_dist[position] + p_dist[position]),
                    dhash_distance=int(d_dist[position]),
                    phash_distance=int(p_dist[position]),
                )
            )
    return matches


# ---------------------------------------------------------------------------------------------------------
# Keyframes
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Keyframe:
    """A still of a segment, shown to volunteers and hashed for duplicate search."""

    time_seconds: float
    jpeg: bytes
    width: int
    height: int
    dhash: str
    phash: str
    sharpness: float
    blank: bool


def _rotate(image: np.ndarray, clockwise: int) -> np.ndarray:
    if clockwise == 90:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if clockwise == 180:
        return cv2.rotate(image, cv2.ROTATE_180)
    if clockwise == 270:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


@dataclass
class _Candidate:
    seconds: float
    score: float
    sharpness: float
    blank: bool
    frame: Any


def extract_keyframes(
    path: str | Path, start_seconds: float, end_seconds: float, *, count: int = 3
) -> list[Keyframe]:
    """Pick `count` sharp, non-blank stills spread over [start, end), one per equal slot of the segment.

    Within a slot, frames are scored by sharpness (variance of the Laplacian) weighted towards the slot's
    middle; near-uniform frames (black, white, flat) are skipped. A slot with only blank frames borrows a
    non-blank frame from another slot; only an entirely blank segment yields frames marked `blank`.
    """
    if end_seconds <= start_seconds:
        raise ValueError("end_seconds must be after start_seconds")
    _, container = _open(path)
    length = end_seconds - start_seconds
    slot = length / count
    best: list[list[_Candidate]] = [[] for _ in range(count)]
    blank_best: list[_Candidate | None] = [None] * count
    with container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        start_pts = _stream_start(stream)
        time_base = stream.time_base
        fps = float(stream.average_rate or 25)
        # Score at most ~10 frames per slot: decoding is sequential anyway, scoring is not free.
        stride = max(1, int(slot * fps / 10))
        if start_seconds > 0:
            container.seek(int(start_seconds / time_base) + start_pts, stream=stream, backward=True)
        index = 0
        reformatter = av.video.reformatter.VideoReformatter()
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                seconds = float((frame.pts - start_pts) * time_base)
                if seconds < start_seconds - 1e-6:
                    continue
                if seconds >= end_seconds - 1e-6:
                    break
                index += 1
                if (index - 1) % stride:
                    continue
                slot_index = min(count - 1, int((seconds - start_seconds) / slot))
                gray = reformatter.reformat(
                    frame, width=160, height=max(2, int(160 * frame.height / frame.width)), format="gray"
                )
                gray_array = gray.to_ndarray()
                blank = is_near_uniform(gray_array)
                sharpness = float(cv2.Laplacian(gray_array, cv2.CV_32F).var())
                planned = start_seconds + (slot_index + 0.5) * slot
                closeness = 1.0 - 0.5 * min(1.0, abs(seconds - planned) / (slot / 2))
                candidate = _Candidate(seconds, sharpness * closeness, sharpness, blank, frame)
                if blank:
                    current = blank_best[slot_index]
                    if current is None or abs(seconds - planned) < abs(current.seconds - planned):
                        blank_best[slot_index] = candidate
                else:
                    ranked = sorted([*best[slot_index], candidate], key=lambda c: -c.score)
                    best[slot_index] = ranked[:3]
        except av.FFmpegError:
            pass
        rotation = _rotation_clockwise(None, stream.metadata.get("rotate"))
        chosen: list[_Candidate] = []
        spare = sorted((c for slot_list in best for c in slot_list[1:]), key=lambda c: -c.score)
        for slot_index in range(count):
            if best[slot_index]:
                chosen.append(best[slot_index][0])
            elif spare:
                planned = start_seconds + (slot_index + 0.5) * slot
                nearest = min(spare, key=lambda c: abs(c.seconds - planned))
                spare.remove(nearest)
                chosen.append(nearest)
            elif (fallback := blank_best[slot_index]) is not None:
                chosen.append(fallback)
        keyframes = []
        for candidate in sorted(chosen, key=lambda c: c.seconds):
            frame_rotation = getattr(candidate.frame, "rotation", 0)
            image: np.ndarray = _rotate(
                candidate.frame.to_ndarray(format="bgr24"),
                _rotation_clockwise(frame_rotation, None) or rotation,
            )
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 88])
            if not ok:
                raise VideoError("could not encode a keyframe as JPEG")
            gray_image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            keyframes.append(
                Keyframe(
                    time_seconds=round(candidate.seconds, 3),
                    jpeg=encoded.tobytes(),
                    width=image.shape[1],
                    height=image.shape[0],
                    dhash=f"{dhash(gray_image):016x}",
                    phash=f"{phash(gray_image):016x}",
                    sharpness=round(candidate.sharpness, 2),
                    blank=candidate.blank,
                )
            )
    return keyframes


# ---------------------------------------------------------------------------------------------------------
# Browser rendition
# ---------------------------------------------------------------------------------------------------------

# (encoder, container format, suffix, mime, audio encoder): first usable wins.
_RENDITIONS = [
    ("libx264", "mp4", ".mp4", "video/mp4", "aac"),
    ("libopenh264", "mp4", ".mp4", "video/mp4", "aac"),
    ("libvpx-vp9", "webm", ".webm", "video/webm", "libopus"),
    ("libvpx", "webm", ".webm", "video/webm", "libopus"),
]


def _encoder_available(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def rendition_codec() -> tuple[str, str, str, str, str]:
    """The browser-playable codec this PyAV build can encode (H.264/MP4 preferred, then VP9/VP8 WebM)."""
    for choice in _RENDITIONS:
        if _encoder_available(choice[0]):
            return choice
    raise VideoError("this FFmpeg build has no browser-playable video encoder (H.264, VP9 or VP8)")


def render_browser_rendition(
    path: str | Path,
    out_path: str | Path,
    *,
    max_height: int = 480,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write a small browser-playable copy that seeks well for `#t=start,end` playback.

    H.264 in MP4 with the index at the front (faststart) and a keyframe every second; when the bundled
    FFmpeg lacks an H.264 encoder, VP9 (or VP8) in WebM, in which case `out_path`'s suffix is replaced.
    Presentation times are kept, so segment times from `detect_shots` address the same frames.
    """
    codec, container_format, suffix, mime, audio_codec = rendition_codec()
    out_path = Path(out_path)
    if out_path.suffix.lower() != suffix:
        out_path = out_path.with_suffix(suffix)
    _, source = _open(path)
    with source:
        video = _video_stream(source)
        video.thread_type = "AUTO"
        audio = source.streams.audio[0] if source.streams.audio else None
        width, height = video.codec_context.width, video.codec_context.height
        out_height = min(max_height, height) // 2 * 2
        out_width = max(2, round(width * out_height / height / 2) * 2)
        fps = float(video.average_rate or 25)
        declared = _declared_duration(source, video) or 0.0
        video_start = _stream_start(video)
        time_base = video.time_base
        options = {"movflags": "+faststart"} if container_format == "mp4" else {}
        tmp_path = out_path.with_name(out_path.name + ".part")
        with av.open(str(tmp_path), "w", format=container_format, options=options) as output:
            out_video: Any = output.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            out_video.width, out_video.height = out_width, out_height
            out_video.pix_fmt = "yuv420p"
            out_video.time_base = time_base
            out_video.codec_context.time_base = time_base
            out_video.codec_context.gop_size = max(1, round(fps))
            if codec == "libx264":
                out_video.options = {"preset": "veryfast", "crf": "27", "profile": "main"}
            elif codec.startswith("libvpx"):
                out_video.options = {"deadline": "realtime", "cpu-used": "8", "crf": "34", "b": "0"}
            out_audio: Any = None
            resampler: Any = None
            if audio is not None and _encoder_available(audio_codec):
                rate = 48000
                out_audio = output.add_stream(audio_codec, rate=rate)
                out_audio.codec_context.layout = "stereo"
                out_audio.codec_context.bit_rate = 96_000
                frame_size = out_audio.codec_context.frame_size or (1024 if audio_codec == "aac" else 960)
                resampler = av.AudioResampler(
                    format="fltp", layout="stereo", rate=rate, frame_size=frame_size
                )
            rotation = 0
            samples = 0
            reformatter = av.video.reformatter.VideoReformatter()
            first_frame = True
            streams = [video] + ([audio] if out_audio is not None else [])
            try:
                for packet in source.demux(*streams):
                    for frame in packet.decode():
                        if packet.stream is video:
                            if frame.pts is None:
                                continue
                            if first_frame:
                                rotation = round(getattr(frame, "rotation", 0) or 0)
                                if rotation:
                                    out_video.set_display_rotation(rotation)
                                first_frame = False
                            small = reformatter.reformat(
                                frame,
                                width=out_width,
                                height=out_height,
                                format="yuv420p",
                                interpolation="AREA",
                            )
                            small.pts = frame.pts - video_start
                            small.time_base = time_base
                            output.mux(out_video.encode(small))
                            if progress is not None and declared and frame.index % 100 == 0:
                                progress(min(0.99, float(small.pts * time_base) / declared))
                        else:
                            assert resampler is not None and out_audio is not None
                            for chunk in resampler.resample(frame):
                                chunk.pts = samples
                                samples += chunk.samples
                                output.mux(out_audio.encode(chunk))
            except av.FFmpegError:
                pass  # keep what decoded from a damaged tail
            if first_frame:
                raise VideoError("the video has no decodable frames")
            output.mux(out_video.encode())
            if out_audio is not None and resampler is not None:
                for chunk in resampler.resample(None):
                    chunk.pts = samples
                    samples += chunk.samples
                    output.mux(out_audio.encode(chunk))
                output.mux(out_audio.encode())
        os.replace(tmp_path, out_path)
    if progress is not None:
        progress(1.0)
    return {
        "path": str(out_path),
        "mime": mime,
        "codec": "h264" if codec in ("libx264", "libopenh264") else codec.removeprefix("lib"),
        "width": out_width,
        "height": out_height,
        "rotation": _rotation_clockwise(rotation, None),
    }
