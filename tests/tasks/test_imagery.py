"""Tests of the pure raster core of imagery ingest, on the real GeoTIFFs in ../shared/media/geotiff."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin
from rasterio.windows import Window

from fixtures.synthetic_imagery import write_large_uint16_scene, write_sparse_huge_geotiff
from tasks.imagery import (
    GridPlan,
    ImageryError,
    describe_raster,
    grid_offsets,
    iter_rendered_tiles,
    parse_aoi,
    plan_grid,
    render_overview,
    sha256_file,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
from tests.conftest import GEOTIFF as GEOTIFF_DIR  # noqa: E402


def geotiff(name: str) -> Path:
    """A real test GeoTIFF from ../shared/media/geotiff (a failure, not a skip, when shared/ is missing)."""
    path = GEOTIFF_DIR / name
    if not path.is_file():
        pytest.fail(f"shared test imagery missing: {path} (the tests need ../shared beside the repo)")
    return path


def expected_tiles(length: int, size: int = 256, overlap: int = 32) -> int:
    """The documented grid arithmetic: one tile if it fits, else 1 + ceil((length - size) / step)."""
    return 1 if length <= size else 1 + math.ceil((length - size) / (size - overlap))


def decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return image


def assert_one_line(error: pytest.ExceptionInfo[ImageryError]) -> None:
    message = str(error.value)
    assert message and "\n" not in message


def assert_bboxes_inside(plan: GridPlan, bounds_4326: list[float], tolerance_deg: float = 1e-6) -> None:
    west, south, east, north = bounds_4326
    for tile in plan.tiles:
        w, s, e, n = tile.bbox_4326
        assert w < e and s < n
        assert w >= west - tolerance_deg and e <= east + tolerance_deg
        assert s >= south - tolerance_deg and n <= north + tolerance_deg


# ------------------------------------------------------------------------------------------- describe_raster


def test_describe_raster_reports_format_metadata() -> None:
    info = describe_raster(geotiff("RGB.byte.tif"))
    assert (info["driver"], info["width"], info["height"], info["count"]) == ("GTiff", 791, 718, 3)
    assert info["dtypes"] == ["uint8"] * 3
    assert info["crs"] == "EPSG:32618"
    assert info["nodata"] == 0
    west, south, east, north = info["bounds_4326"]
    assert -80 < west < east < -76 and 23 < south < north < 26
    json.dumps(info)  # stored as provenance: must be JSON-able


def test_describe_raster_reads_acquisition_date_from_tiff_datetime() -> None:
    assert describe_raster(geotiff("all-nodata.tif"))["acquisition_date"] == "2022-01-17T10:43:43"


def test_describe_raster_reports_alpha_band() -> None:
    info = describe_raster(geotiff("RGBA.uint16.tif"))
    assert info["has_alpha"] is True and info["dtypes"] == ["uint16"] * 4


def test_corrupt_file_is_refused_with_one_line() -> None:
    with pytest.raises(ImageryError, match=r"corrupt.tif is damaged") as error:
        describe_raster(geotiff("corrupt.tif"))
    assert_one_line(error)
    # GDAL's own reason, not rasterio's "See previous exception for details."
    assert "previous exception" not in str(error.value)
    assert "TIFF" in str(error.value)


def test_rotated_raster_without_crs_is_refused() -> None:
    with pytest.raises(ImageryError, match=r"rotated.tif has no CRS") as error:
        plan_grid(geotiff("rotated.tif"))
    assert_one_line(error)


def test_float_nan_fixture_without_crs_is_refused() -> None:
    with pytest.raises(ImageryError, match=r"float_nan.tif has no CRS") as error:
        describe_raster(geotiff("float_nan.tif"))
    assert_one_line(error)


def test_text_file_named_tif_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.tif"
    path.write_text("these are not pixels\n")
    with pytest.raises(ImageryError, match=r"notes.tif is not a readable raster") as error:
        describe_raster(path)
    assert_one_line(error)
    assert str(tmp_path) not in str(error.value)  # the server's folders are not the researcher's business
    assert "not recognized as being in a supported file format" in str(error.value)


def test_zero_byte_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    path.touch()
    with pytest.raises(ImageryError, match=r"empty.tif is empty") as error:
        plan_grid(path)
    assert_one_line(error)


def test_header_claiming_enormous_dimensions_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.tif"
    write_sparse_huge_geotiff(path, 300_000)
    with pytest.raises(ImageryError, match=r"300000x300000 pixels") as error:
        describe_raster(path)
    assert_one_line(error)


def test_pixel_limit_is_configurable() -> None:
    with pytest.raises(ImageryError, match=r"791x718"):
        describe_raster(geotiff("RGB.byte.tif"), max_pixels=500_000)


# ------------------------------------------------------------------------------------------- grid arithmetic


def test_grid_offsets_align_last_tile_to_the_edge() -> None:
    assert grid_offsets(791, 256, 32) == [0, 224, 448, 535]
    assert grid_offsets(256, 256, 32) == [0]
    assert grid_offsets(20, 256, 32) == [0]
    assert grid_offsets(480, 256, 32) == [0, 224]


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(min_value=1, max_value=20_000),
    size=st.integers(min_value=64, max_value=2048),
    overlap_share=st.floats(min_value=0, max_value=0.99),
)
def test_grid_offsets_cover_every_pixel_without_slivers(length: int, size: int, overlap_share: float) -> None:
    overlap = min(size - 1, int(size * overlap_share))
    offsets = grid_offsets(length, size, overlap)
    tile = min(size, length)
    assert len(offsets) == expected_tiles(length, size, overlap)
    assert offsets[0] == 0 and offsets[-1] + tile == length  # first and last tiles touch the edges
    assert all(offset >= 0 and offset + tile <= length for offset in offsets)  # all windows inside
    for previous, current in itertools.pairwise(offsets):
        assert 0 < current - previous <= size - overlap  # strictly increasing, gaps never open
        assert previous + tile - current >= overlap  # consecutive tiles overlap at least `overlap`
    assert tile == size or len(offsets) == 1  # every tile full size: no slivers


def test_tile_size_and_overlap_are_validated() -> None:
    with pytest.raises(ImageryError, match=r"tile size"):
        plan_grid(geotiff("byte.tif"), tile_size_px=32)
    with pytest.raises(ImageryError, match=r"overlap"):
        plan_grid(geotiff("byte.tif"), tile_size_px=128, overlap_px=128)


# ------------------------------------------------------------------------------------------- single scenes


def test_single_scene_grid_follows_grid_arithmetic() -> None:
    plan = plan_grid(geotiff("RGB.byte.tif"))
    assert (plan.width, plan.height, plan.paired) == (791, 718, False)
    assert (plan.grid_rows, plan.grid_cols) == (expected_tiles(718), expected_tiles(791)) == (4, 4)
    assert len(plan.tiles) == 16
    assert all((t.width, t.height) == (256, 256) for t in plan.tiles)
    assert_bboxes_inside(plan, describe_raster(geotiff("RGB.byte.tif"))["bounds_4326"])


def test_tile_footprints_are_closed_counterclockwise_rings() -> None:
    tile = plan_grid(geotiff("RGB.byte.tif")).tiles[0]
    ring = tile.footprint_4326["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    area2 = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in itertools.pairwise(ring))
    assert area2 > 0


def test_nodata_collar_lowers_valid_fraction_and_empty_tiles_are_skipped() -> None:
    path = geotiff("RGB.byte.tif")
    plan = plan_grid(path, tile_size_px=64, overlap_px=0)
    tiles = list(iter_rendered_tiles(path, None, plan))
    by_place = {(t.spec.row, t.spec.col): t for t in tiles}
    assert by_place[(0, 0)].skip_reason == "empty" and by_place[(0, 0)].before_jpeg == b""
    centre = by_place[(plan.grid_rows // 2, plan.grid_cols // 2)]
    assert centre.skip_reason is None and centre.valid_fraction == 1.0
    assert any(0.05 <= t.valid_fraction < 1.0 and t.skip_reason is None for t in tiles)
    assert len(tiles) == len(plan.tiles)  # skipped tiles are yielded too, so the caller can count them


def test_collar_pixels_render_black() -> None:
    path = geotiff("RGB.byte.tif")
    plan = plan_grid(path)
    first = next(iter_rendered_tiles(path, None, plan))
    image = decode(first.before_jpeg)
    assert image.shape == (256, 256, 3)
    assert image[:8, :8].max() < 16  # top-left corner is collar (nodata)
    assert 0.05 < first.valid_fraction < 1.0


def test_tiles_are_phone_sized_jpegs() -> None:
    path = geotiff("RGB.byte.tif")
    sizes = [
        len(t.before_jpeg) for t in iter_rendered_tiles(path, None, plan_grid(path)) if t.skip_reason is None
    ]
    assert sizes and max(sizes) < 40_000 and float(np.median(sizes)) > 3_000


def test_scene_smaller_than_a_tile_gives_exactly_one_tile() -> None:
    path = geotiff("byte.tif")
    plan = plan_grid(path)
    assert len(plan.tiles) == 1
    tile = plan.tiles[0]
    assert (tile.col_off, tile.row_off, tile.width, tile.height) == (0, 0, 20, 20)
    rendered = list(iter_rendered_tiles(path, None, plan))
    assert decode(rendered[0].before_jpeg).shape == (20, 20)  # one grey band


def test_all_nodata_scene_plans_but_every_tile_is_skipped_as_empty() -> None:
    path = geotiff("all-nodata.tif")
    plan = plan_grid(path)
    assert len(plan.tiles) == expected_tiles(2475) * expected_tiles(71) == 11
    tiles = list(iter_rendered_tiles(path, None, plan))
    assert len(tiles) == 11 and {t.skip_reason for t in tiles} == {"empty"}
    assert all(t.valid_fraction == 0.0 for t in tiles)


def test_sixteen_bit_with_alpha_masks_transparent_pixels() -> None:
    path = geotiff("RGBA.uint16.tif")
    plan = plan_grid(path)
    assert len(plan.tiles) == expected_tiles(411) * expected_tiles(634) == 6
    tiles = list(iter_rendered_tiles(path, None, plan))
    with rasterio.open(path) as dataset:
        alpha = dataset.read(4)
    for tile in tiles:
        window = alpha[
            tile.spec.row_off : tile.spec.row_off + tile.spec.height,
            tile.spec.col_off : tile.spec.col_off + tile.spec.width,
        ]
        assert tile.valid_fraction == pytest.approx(float((window > 0).mean()))
    rendered = next(t for t in tiles if t.skip_reason is None and t.valid_fraction < 1)
    image = decode(rendered.before_jpeg).astype(int)
    window_alpha = alpha[
        rendered.spec.row_off : rendered.spec.row_off + 256,
        rendered.spec.col_off : rendered.spec.col_off + 256,
    ]
    assert image[window_alpha == 0].mean() < 10  # transparent -> black
    assert abs(image[window_alpha > 0].mean() - 128) < 10  # the flat 10000-valued bands show mid-grey


def test_float_raster_nan_pixels_are_invalid(tmp_path: Path) -> None:
    # float_nan.tif has no CRS (refused above); the same pixels with a CRS must render, NaN as invalid.
    with rasterio.open(geotiff("float_nan.tif")) as source:
        pixels, profile = source.read(), source.profile
    profile.update(crs="EPSG:32618", transform=from_origin(300_000, 2_700_000, 100, 100))
    path = tmp_path / "float_nan_georeferenced.tif"
    with rasterio.open(path, "w", **profile) as target:
        target.write(pixels)
    plan = plan_grid(path)
    (tile,) = list(iter_rendered_tiles(path, None, plan))
    assert tile.skip_reason is None
    assert tile.valid_fraction == pytest.approx(5 / 6)
    image = decode(tile.before_jpeg)
    assert image.shape == (2, 3) and image[0, 2] < 16


def test_geographic_scene_keeps_its_grid_and_valid_bboxes() -> None:
    path = geotiff("world.byte.tif")
    plan = plan_grid(path)
    assert plan.crs == "EPSG:4326"
    assert len(plan.tiles) == expected_tiles(2880) * expected_tiles(1200) == 78
    assert_bboxes_inside(plan, [-180.0, -75.0, 180.0, 75.0])
    assert plan.tiles[-1].bbox_4326[2] == pytest.approx(180.0)


def test_overview_fits_max_size_and_uses_the_plan_grid() -> None:
    path = geotiff("world.byte.tif")
    image = decode(render_overview(path, plan_grid(path), max_size_px=512))
    assert image.shape == (213, 512)


def test_progress_reports_every_tile() -> None:
    path = geotiff("RGBA.uint16.tif")
    calls: list[tuple[int, int]] = []
    list(
        iter_rendered_tiles(
            path, None, plan_grid(path), progress=lambda done, total: calls.append((done, total))
        )
    )
    assert calls == [(n, 6) for n in range(1, 7)]


def test_threaded_rendering_matches_single_threaded_in_plan_order() -> None:
    path = geotiff("RGB.byte.tif")
    plan = plan_grid(path, tile_size_px=64, overlap_px=8)
    single = list(iter_rendered_tiles(path, None, plan, workers=1))
    threaded = list(iter_rendered_tiles(path, None, plan, workers=2))
    assert [t.spec for t in threaded] == plan.tiles == [t.spec for t in single]
    assert [t.before_jpeg for t in threaded] == [t.before_jpeg for t in single]


def test_stopping_early_releases_the_render_threads() -> None:
    path = geotiff("RGB.byte.tif")
    tiles = iter_rendered_tiles(path, None, plan_grid(path, tile_size_px=64, overlap_px=8), workers=2)
    first = next(tiles)
    tiles.close()  # the caller gave up (e.g. an error elsewhere): must not hang
    assert first.spec.row == 0 and first.spec.col == 0


def test_sha256_file_matches_hashlib() -> None:
    path = geotiff("RGB.byte.tif")
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------- pairs


def test_pair_on_the_same_grid_keeps_that_grid() -> None:
    before, after = geotiff("RGB.byte.tif"), geotiff("RGB2.byte.tif")
    plan = plan_grid(before, after)
    with rasterio.open(before) as dataset:
        assert plan.transform == pytest.approx(tuple(dataset.transform)[:6])
    assert (plan.width, plan.height, len(plan.tiles), plan.paired) == (791, 718, 16, True)
    assert plan.overlap_area_m2 == pytest.approx(791 * 300.038 * 718 * 300.042, rel=0.01)


def test_pair_tiles_show_the_same_ground_in_both_dates() -> None:
    before, after = geotiff("RGB.byte.tif"), geotiff("RGB2.byte.tif")
    plan = plan_grid(before, after)
    tiles = [t for t in iter_rendered_tiles(before, after, plan) if t.skip_reason is None]
    assert len(tiles) == 16
    for tile in tiles:
        assert tile.after_jpeg
        a, b = decode(tile.before_jpeg).astype(float), decode(tile.after_jpeg).astype(float)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95


def test_pair_sharing_a_sliver_is_refused() -> None:
    # rgb1 and rgb2 share exactly one 300 m pixel column of the same UTM grid: tiles 1 px wide are no task.
    with pytest.raises(ImageryError, match=r"overlap on only 1x400 px \(36.0 km²\)") as error:
        plan_grid(geotiff("rgb1.tif"), geotiff("rgb2.tif"))
    assert_one_line(error)
    assert "check that they show the same place" in str(error.value)


def test_partly_overlapping_pair_grid_covers_only_the_intersection(tmp_path: Path) -> None:
    # Two crops of one Landsat scene that share its columns 300-499 (200 px, 60 km) over all 718 rows.
    crops = {}
    with rasterio.open(geotiff("RGB.byte.tif")) as scene:
        for name, window in {"west": Window(0, 0, 500, 718), "east": Window(300, 0, 491, 718)}.items():
            profile = {**scene.profile, "width": window.width, "height": window.height}
            profile["transform"] = scene.window_transform(window)
            crops[name] = tmp_path / f"{name}.tif"
            with rasterio.open(crops[name], "w", **profile) as out:
                out.write(scene.read(window=window))
    plan = plan_grid(crops["west"], crops["east"])
    assert (plan.width, plan.height) == (200, 718)
    assert len(plan.tiles) == expected_tiles(200) * expected_tiles(718)
    assert plan.overlap_area_m2 == pytest.approx(200 * 300.038 * 718 * 300.042, rel=0.01)
    west = describe_raster(crops["east"])["bounds_4326"][0]
    east = describe_raster(crops["west"])["bounds_4326"][2]
    assert all(t.bbox_4326[0] >= west - 0.01 and t.bbox_4326[2] <= east + 0.01 for t in plan.tiles)


def test_non_overlapping_pair_is_refused() -> None:
    with pytest.raises(ImageryError, match=r"the two images do not overlap") as error:
        plan_grid(geotiff("RGB.byte.tif"), geotiff("byte.tif"))
    assert_one_line(error)


def test_pair_in_different_crs_and_resolution_is_co_registered() -> None:
    before, after = geotiff("rgb1.tif"), geotiff("rgb1_fake_nir_epsg3857.tif")
    plan = plan_grid(before, after)
    # finer resolution (the 3857 image's ~200 m, i.e. ~181 m on the ground at 25 N) in the before's UTM CRS
    assert plan.affine.a == pytest.approx(181.2, abs=0.5)
    assert len(plan.tiles) == expected_tiles(plan.width) * expected_tiles(plan.height)
    assert_bboxes_inside(plan, describe_raster(before)["bounds_4326"], tolerance_deg=0.01)
    tiles = [t for t in iter_rendered_tiles(before, after, plan) if t.valid_fraction > 0.9]
    assert tiles
    for tile in tiles:
        # The fake NIR band is the scene's red band reprojected: the two tiles must correlate best unshifted.
        red = decode(tile.before_jpeg)[:, :, 2].astype(float)
        nir = decode(tile.after_jpeg).astype(float)
        scores = {}
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = np.roll(np.roll(red, dy, axis=0), dx, axis=1)[4:-4, 4:-4]
                scores[(dy, dx)] = np.corrcoef(shifted.ravel(), nir[4:-4, 4:-4].ravel())[0, 1]
        best = max(scores, key=lambda shift: scores[shift])
        assert max(abs(best[0]), abs(best[1])) <= 1, scores
        assert scores[best] > 0.7


def test_geographic_pair_gets_a_local_utm_grid(tmp_path: Path) -> None:
    with rasterio.open(geotiff("world.byte.tif")) as world:
        window = Window(1452, 420, 24, 16)  # 3 x 2 degrees at 1.5-4.5 E, 20.5-22.5 N (UTM zone 31 centre)
        profile = world.profile | {"width": 24, "height": 16, "transform": world.window_transform(window)}
        pixels = world.read(window=window)
    path = tmp_path / "crop.tif"
    with rasterio.open(path, "w", **profile) as target:
        target.write(pixels)
    plan = plan_grid(path, path)
    assert plan.crs.startswith("EPSG:326")
    # The grid is a UTM rectangle around a lon/lat quadrangle, rounded up to whole 0.125-degree pixels:
    # its edges may spill out by one pixel plus the meridians' convergence.
    assert_bboxes_inside(plan, describe_raster(path)["bounds_4326"], tolerance_deg=0.15)


# ------------------------------------------------------------------------------------------- AOI


def test_parse_aoi_accepts_feature_collection_and_declared_crs() -> None:
    collection = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "EPSG:32618"}},
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [200_000, 2_700_000],
                            [250_000, 2_700_000],
                            [250_000, 2_750_000],
                            [200_000, 2_700_000],
                        ]
                    ],
                },
            }
        ],
    }
    geometry = parse_aoi(json.dumps(collection))
    west, south, east, north = geometry.bounds
    assert -78.0 < west < east < -77.0 and 24.0 < south < north < 25.0


def test_invalid_aoi_json_is_refused() -> None:
    with pytest.raises(ImageryError, match=r"not valid GeoJSON") as error:
        plan_grid(geotiff("byte.tif"), aoi="{not json")
    assert_one_line(error)


def test_non_polygonal_aoi_is_refused() -> None:
    with pytest.raises(ImageryError, match=r"Polygon"):
        parse_aoi({"type": "Point", "coordinates": [0, 0]})


def test_aoi_keeps_only_tiles_it_touches() -> None:
    path = geotiff("RGB.byte.tif")
    full = plan_grid(path)
    # A small box inside the top-left tile only (in pixel terms: cols 50..100, rows 50..100).
    first = full.tiles[0].footprint_4326["coordinates"][0]
    lons = [p[0] for p in first]
    lats = [p[1] for p in first]
    west, east = min(lons), max(lons)
    south, north = min(lats), max(lats)
    span_x, span_y = east - west, north - south
    box = [
        [west + 0.2 * span_x, north - 0.4 * span_y],
        [west + 0.4 * span_x, north - 0.4 * span_y],
        [west + 0.4 * span_x, north - 0.2 * span_y],
        [west + 0.2 * span_x, north - 0.2 * span_y],
        [west + 0.2 * span_x, north - 0.4 * span_y],
    ]
    plan = plan_grid(path, aoi={"type": "Polygon", "coordinates": [box]})
    assert [(t.row, t.col) for t in plan.tiles] == [(0, 0)]
    assert plan.tiles_outside_aoi == 15


def test_aoi_that_does_not_touch_the_scene_is_refused() -> None:
    far_away = {"type": "Polygon", "coordinates": [[[10, 10], [11, 10], [11, 11], [10, 11], [10, 10]]]}
    with pytest.raises(ImageryError, match=r"does not touch the imagery") as error:
        plan_grid(geotiff("RGB.byte.tif"), aoi=far_away)
    assert_one_line(error)


# ------------------------------------------------------------------------------------------- memory


@pytest.mark.slow
def test_rendering_a_20000_px_scene_keeps_memory_under_1_gb(tmp_path: Path) -> None:
    path = tmp_path / "large.tif"
    write_large_uint16_scene(path, 20_000)
    # Rendered in a fresh interpreter so its peak RSS is this job's alone. The first 3 tile rows (~270
    # tiles) cover full-width reads; the full 20000 px run is in benchmarks/imagery_tiling.py.
    script = textwrap.dedent(
        f"""
        import json
        from tasks.imagery import iter_rendered_tiles, plan_grid
        plan = plan_grid({str(path)!r})
        plan.tiles = [t for t in plan.tiles if t.row < 3]
        rendered = sum(1 for t in iter_rendered_tiles({str(path)!r}, None, plan) if t.skip_reason is None)
        # VmHWM (peak RSS of this process image); ru_maxrss would include the forking parent's peak.
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        peak_mb = int(status["VmHWM"].split()[0]) / 1024
        grid = [plan.grid_rows, plan.grid_cols]
        print(json.dumps({{"tiles": rendered, "grid": grid, "peak_rss_mb": peak_mb}}))
        """
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["grid"] == [expected_tiles(20_000), expected_tiles(20_000)]
    assert figures["tiles"] == 3 * expected_tiles(20_000)
    assert figures["peak_rss_mb"] < 1024, figures
    assert time.perf_counter() - started < 60
