"""Pure raster core of imagery ingest: validate GeoTIFFs, plan tile grids, co-register pairs, render tiles.

No Django here: every function takes paths and plain values and returns plain values, so the whole pipeline
can be tested and benchmarked on its own.

Grid rule (``grid_offsets``): along an axis of ``length`` pixels with tile ``size`` and ``overlap``,
``step = size - overlap``. A raster no longer than one tile gives exactly one tile covering all of it (the
tile is then smaller than ``size``). Otherwise tiles start at ``0, step, 2*step, ...`` and the LAST tile is
shifted back so that it ends exactly on the raster edge (offset ``length - size``); its overlap with the
previous tile is therefore between ``overlap`` and ``size - 1`` pixels. Every tile is full size, there are no
slivers, and the count is ``1 + ceil((length - size) / step)``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform_geom
from rasterio.warp import transform as warp_points
from rasterio.windows import Window
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from tasks.messages import N_, Explained

__all__ = [
    "MAX_PIXELS",
    "MAX_SIDE_PX",
    "GridPlan",
    "ImageryError",
    "RenderedTile",
    "TileSpec",
    "describe_raster",
    "grid_offsets",
    "iter_rendered_tiles",
    "parse_aoi",
    "plan_grid",
    "render_overview",
    "sha256_file",
]

#: Refuse rasters whose header claims more than this many pixels (before any pixel is read).
MAX_PIXELS = 2_000_000_000
#: Refuse rasters wider or taller than this.
MAX_SIDE_PX = 200_000
MIN_TILE_SIZE_PX = 64
#: A before/after pair must share at least this many pixels each way (unless it is most of the smaller image):
#: a thinner strip only makes slivers.
MIN_PAIR_OVERLAP_PX = 32
MAX_TILE_SIZE_PX = 2048
#: GDAL block cache used while rendering: enough to keep one row of tiles' blocks, bounded whatever the scene.
GDAL_CACHE_BYTES = 192 * 1024 * 1024
#: Pixels read to estimate a scene's contrast stretch: small scenes are read whole, large ones sampled.
STRETCH_SAMPLE_PX = 4_000_000
#: A tile is flagged cloudy when this share of its valid pixels is bright and unsaturated.
CLOUDY_FRACTION = 0.4
_EQUAL_AREA_CRS = CRS.from_epsg(6933)  # WGS 84 / NSIDC EASE-Grid 2.0 Global: equal-area, for m² figures
_WGS84 = CRS.from_epsg(4326)
_CHUNK_BYTES = 1024 * 1024


class ImageryError(Explained):
    """A problem with an uploaded image or area of interest that the user can fix; the message is one line
    (a template and its figures: tasks/messages.py)."""


# --------------------------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class TileSpec:
    """One tile of the grid: its pixel window on the plan grid and where it lies on Earth."""

    row: int
    col: int
    col_off: int
    row_off: int
    width: int
    height: int
    bbox_4326: tuple[
        float, float, float, float
    ]  # west, south, east, north (west > east across the antimeridian)
    footprint_4326: dict[str, Any]  # GeoJSON Polygon, counterclockwise exterior ring (RFC 7946)

    @property
    def window(self) -> Window:
        return Window(self.col_off, self.row_off, self.width, self.height)


@dataclass
class GridPlan:
    """The grid every tile of a source (or a before/after pair) is cut from.

    ``crs``/``transform``/``width``/``height`` define the common pixel grid: for a single scene it is the
    scene's own grid; for a pair it is the footprints' intersection, resampled to the finer resolution in a
    local projected CRS. ``warp_params()`` gives the arguments to build a ``WarpedVRT`` onto that grid.
    """

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    tile_size_px: int
    overlap_px: int
    tiles: list[TileSpec]
    overlap_area_m2: float | None
    tiles_outside_aoi: int
    paired: bool
    grid_rows: int = 0
    grid_cols: int = 0
    bounds_4326: tuple[float, float, float, float] | None = None
    resampling: str = "bilinear"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    def warp_params(self) -> dict[str, Any]:
        """Keyword arguments for ``rasterio.vrt.WarpedVRT`` that put any source onto this plan's grid."""
        return {
            "crs": CRS.from_user_input(self.crs),
            "transform": self.affine,
            "width": self.width,
            "height": self.height,
            "resampling": Resampling[self.resampling],
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tiles included) for storage with the source's provenance."""
        return {
            "crs": self.crs,
            "transform": list(self.transform),
            "width": self.width,
            "height": self.height,
            "tile_size_px": self.tile_size_px,
            "overlap_px": self.overlap_px,
            "grid_rows": self.grid_rows,
            "grid_cols": self.grid_cols,
            "overlap_area_m2": self.overlap_area_m2,
            "tiles_outside_aoi": self.tiles_outside_aoi,
            "paired": self.paired,
            "bounds_4326": list(self.bounds_4326) if self.bounds_4326 else None,
            "resampling": self.resampling,
            "tiles": [
                {
                    "row": t.row,
                    "col": t.col,
                    "col_off": t.col_off,
                    "row_off": t.row_off,
                    "width": t.width,
                    "height": t.height,
                    "bbox_4326": list(t.bbox_4326),
                    "footprint_4326": t.footprint_4326,
                }
                for t in self.tiles
            ],
        }


@dataclass
class RenderedTile:
    """A tile rendered as JPEG for volunteers; ``skip_reason`` set means "do not make a task of it"."""

    spec: TileSpec
    before_jpeg: bytes
    after_jpeg: bytes | None
    valid_fraction: float
    cloudy: bool
    skip_reason: str | None


# --------------------------------------------------------------------------------------------- utilities


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks so memory stays flat for any file size."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def grid_offsets(length: int, size: int, overlap: int) -> list[int]:
    """Tile start offsets along one axis (rule in the module docstring); tiles are ``min(size, length)``."""
    if length <= 0:
        return []
    if length <= size:
        return [0]
    step = size - overlap
    count = 1 + math.ceil((length - size) / step)
    offsets = [i * step for i in range(count - 1)]
    offsets.append(length - size)
    return offsets


def _crs_string(crs: CRS) -> str:
    epsg = crs.to_epsg(confidence_threshold=90) if crs else None
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _crs_name(crs: CRS) -> str:
    match = re.match(r'\s*[A-Z]+\["([^"]+)"', crs.to_wkt())
    return match.group(1) if match else crs.to_string()


def _utm_crs(lon: float, lat: float) -> CRS:
    zone = min(60, max(1, math.floor((lon + 180.0) / 6.0) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _parse_date(value: str) -> str | None:
    text = value.strip().rstrip("Z").replace("T", " ")
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).isoformat()
        except ValueError:
            continue
    return None


def _acquisition_date(tags: dict[str, str]) -> str | None:
    keys = [k for k in tags if "ACQUISITION" in k.upper() or k.upper() in {"DATE_ACQUIRED", "ACQUIRED"}]
    keys.append("TIFFTAG_DATETIME")
    for key in keys:
        if key in tags and (parsed := _parse_date(tags[key])):
            return parsed
    return None


# --------------------------------------------------------------------------------------------- opening


def _open_checked(
    path: str | Path, *, max_pixels: int = MAX_PIXELS, max_side_px: int = MAX_SIDE_PX
) -> DatasetReader:
    """Open a raster and refuse, with a one-line message, anything we cannot tile safely."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ImageryError(N_("%(name)s does not exist"), name=name)
    if path.stat().st_size == 0:
        raise ImageryError(N_("%(name)s is empty (zero bytes)"), name=name)
    try:
        dataset = rasterio.open(path)
    except RasterioError as exc:
        raise ImageryError(
            N_("%(name)s is not a readable raster image: %(reason)s"),
            name=name,
            reason=gdal_reason(exc, path),
        ) from exc
    try:
        _check_dataset(dataset, name, max_pixels=max_pixels, max_side_px=max_side_px)
    except BaseException:
        dataset.close()
        raise
    return dataset


def gdal_reason(exc: BaseException, path: str | Path) -> str:
    """GDAL's own reason for a failure, without the file's path: the innermost message of the chain.

    rasterio wraps it as "Read failed. See previous exception for details." and GDAL prefixes the path,
    which on a server is a scratch path the researcher never chose.
    """
    path = Path(path)
    reasons: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(reasons) < 8:
        text = str(current)
        if text and "See previous exception" not in text:
            reasons.append(text)
        current = current.__cause__ or current.__context__
    reason = reasons[-1] if reasons else type(exc).__name__
    for token in (f"'{path}'", f'"{path}"', str(path), f"{path.name}:", f"{path.name},", path.name):
        reason = reason.replace(token, "")
    return " ".join(reason.split()).strip(" :,.") or type(exc).__name__


def _check_dataset(dataset: DatasetReader, name: str, *, max_pixels: int, max_side_px: int) -> None:
    width, height = dataset.width, dataset.height
    if width <= 0 or height <= 0 or dataset.count <= 0:
        raise ImageryError(N_("%(name)s has no pixels"), name=name)
    if width > max_side_px or height > max_side_px or width * height > max_pixels:
        raise ImageryError(
            N_(
                "%(name)s claims %(width)dx%(height)d pixels, more than the limit of %(side)d px a side "
                "and %(total)s px in all"
            ),
            name=name,
            width=width,
            height=height,
            side=max_side_px,
            total=f"{max_pixels:,}",
        )
    if dataset.crs is None:
        raise ImageryError(N_("%(name)s has no CRS: a georeferenced raster is required"), name=name)
    if dataset.transform.is_identity:
        if dataset.gcps[0]:
            raise ImageryError(
                N_("%(name)s is georeferenced only by control points: warp it to a map grid first"), name=name
            )
        raise ImageryError(N_("%(name)s has no geotransform: a georeferenced raster is required"), name=name)
    supported = {"uint8", "uint16", "int16", "uint32", "int32", "float32", "float64", "int8"}
    if any(dtype not in supported for dtype in dataset.dtypes):
        raise ImageryError(
            N_("%(name)s has unsupported pixel type %(dtype)s"), name=name, dtype=dataset.dtypes[0]
        )
    # A truncated or damaged file usually opens and then fails on its first or last block: try both now,
    # so a damaged upload is refused before any task exists.
    block_height, block_width = dataset.block_shapes[0]
    last = Window(
        (max(0, width - 1) // block_width) * block_width,
        (max(0, height - 1) // block_height) * block_height,
        min(block_width, width - ((width - 1) // block_width) * block_width),
        min(block_height, height - ((height - 1) // block_height) * block_height),
    )
    try:
        for window in (Window(0, 0, min(block_width, width), min(block_height, height)), last):
            dataset.read(window=window)
    except RasterioError as exc:
        raise ImageryError(
            N_("%(name)s is damaged: its pixels cannot be read (%(reason)s)"),
            name=name,
            reason=gdal_reason(exc, dataset.name),
        ) from exc


# --------------------------------------------------------------------------------------------- describe


def _band_roles(dataset: DatasetReader) -> tuple[list[int], int | None]:
    """(display band indexes in R,G,B order or [grey], alpha band index or None)."""
    interp = list(dataset.colorinterp)
    alpha = next((i + 1 for i, ci in enumerate(interp) if ci == ColorInterp.alpha), None)
    colour = {ci: i + 1 for i, ci in enumerate(interp)}
    if all(ci in colour for ci in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        return [colour[ColorInterp.red], colour[ColorInterp.green], colour[ColorInterp.blue]], alpha
    others = [i for i in range(1, dataset.count + 1) if i != alpha]
    if len(others) >= 3:
        return others[:3], alpha
    return others[:1], alpha


def _corner_bounds_4326(crs: CRS, transform: Affine, width: int, height: int) -> tuple[float, ...]:
    lons, lats = _edge_points_4326(crs, transform, [(0, 0, width, height)], per_edge=16)
    return _bbox_from_points(lons[0], lats[0])


def describe_raster(
    path: str | Path, *, max_pixels: int = MAX_PIXELS, max_side_px: int = MAX_SIDE_PX
) -> dict[str, Any]:
    """JSON-able format metadata for a source's provenance; raises ImageryError for unusable files."""
    with _open_checked(path, max_pixels=max_pixels, max_side_px=max_side_px) as dataset:
        tags = dataset.tags()
        display, alpha = _band_roles(dataset)
        flags = dataset.mask_flag_enums
        has_mask = any(MaskFlags.per_dataset in f and MaskFlags.alpha not in f for f in flags)
        nodata = dataset.nodata
        return {
            "driver": dataset.driver,
            "width": dataset.width,
            "height": dataset.height,
            "count": dataset.count,
            "dtypes": list(dataset.dtypes),
            "crs": _crs_string(dataset.crs),
            "crs_name": _crs_name(dataset.crs),
            "crs_is_geographic": bool(dataset.crs.is_geographic),
            "transform": list(dataset.transform)[:6],
            "bounds": list(dataset.bounds),
            "bounds_4326": list(
                _corner_bounds_4326(dataset.crs, dataset.transform, dataset.width, dataset.height)
            ),
            "res": list(dataset.res),
            "nodata": None if nodata is None else ("nan" if math.isnan(nodata) else nodata),
            "colorinterp": [ci.name for ci in dataset.colorinterp],
            "display_bands": display,
            "has_alpha": alpha is not None,
            "has_mask": has_mask,
            "block_shape": list(dataset.block_shapes[0]),
            "overviews": dataset.overviews(1),
            "compression": dataset.compression.value if dataset.compression else None,
            "acquisition_date": _acquisition_date(tags),
            "tags": {key: value[:2000] for key, value in tags.items()},
        }


# --------------------------------------------------------------------------------------------- AOI


def parse_aoi(aoi: str | bytes | dict[str, Any]) -> BaseGeometry:
    """An area of interest as a (Multi)Polygon in EPSG:4326 from GeoJSON text or a parsed GeoJSON object."""
    if isinstance(aoi, bytes | str):
        try:
            data = json.loads(aoi)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ImageryError(N_("the area of interest is not valid GeoJSON: %(error)s"), error=exc) from exc
    else:
        data = aoi
    if not isinstance(data, dict) or "type" not in data:
        raise ImageryError(N_("the area of interest is not a GeoJSON object"))
    declared = data.get("crs")
    if data["type"] == "FeatureCollection":
        geometries = [feature.get("geometry") for feature in data.get("features") or []]
    elif data["type"] == "Feature":
        geometries = [data.get("geometry")]
    else:
        geometries = [data]
    polygons: list[Polygon] = []
    for geometry in geometries:
        if not isinstance(geometry, dict):
            raise ImageryError(N_("the area of interest has a feature without a geometry"))
        if geometry.get("type") not in {"Polygon", "MultiPolygon"}:
            raise ImageryError(
                N_("the area of interest must be a Polygon or MultiPolygon, not %(type)s"),
                type=geometry.get("type"),
            )
        try:
            shp = shape(geometry)
        except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
            raise ImageryError(
                N_("the area of interest has malformed coordinates: %(error)s"), error=exc
            ) from exc
        if not shp.is_valid:
            shp = shapely.make_valid(shp)
        polygons.extend(_polygons_of(shp))
    merged = shapely.union_all(polygons) if polygons else Polygon()
    if merged.is_empty or merged.area == 0:
        raise ImageryError(N_("the area of interest is empty"))
    if declared is not None:
        try:
            crs = CRS.from_user_input(declared["properties"]["name"])
        except (KeyError, TypeError, RasterioError) as exc:
            raise ImageryError(
                N_("the area of interest declares an unknown CRS: %(crs)s"), crs=declared
            ) from exc
        if crs != _WGS84 and crs.to_epsg() != 4326:
            merged = shape(transform_geom(crs, _WGS84, shapely.segmentize(merged, _segment_len(merged))))
    minx, miny, maxx, maxy = merged.bounds
    if minx < -540 or maxx > 540 or miny < -90.0001 or maxy > 90.0001:
        raise ImageryError(N_("the area of interest is not in longitude/latitude (declare its CRS)"))
    return merged


def _segment_len(geometry: BaseGeometry) -> float:
    minx, miny, maxx, maxy = geometry.bounds
    return max(maxx - minx, maxy - miny, 1e-9) / 32


def _polygons_of(geometry: BaseGeometry) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [geometry] if not geometry.is_empty else []
    if isinstance(geometry, MultiPolygon):
        return list(geometry.geoms)
    if hasattr(geometry, "geoms"):
        return [p for g in geometry.geoms for p in _polygons_of(g)]
    return []


# --------------------------------------------------------------------------------------------- planning


def _edge_points_4326(
    crs: CRS, transform: Affine, windows: list[tuple[int, int, int, int]], per_edge: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat of points along each window's outline, one row per window, counterclockwise on the map.

    Order: bottom-left corner, along the bottom edge, right edge, top edge, left edge; ``per_edge`` points per
    edge, so the corners sit at indices 0, per_edge, 2*per_edge, 3*per_edge.
    """
    win = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    c0, r0, w, h = win[:, 0:1], win[:, 1:2], win[:, 2:3], win[:, 3:4]
    t = np.arange(per_edge, dtype=np.float64)[None, :] / per_edge
    # in pixel space (rows grow downwards): BL -> BR -> TR -> TL -> back
    cols = np.concatenate([c0 + t * w, c0 + w + 0 * t, c0 + w - t * w, c0 + 0 * t], axis=1)
    rows = np.concatenate([r0 + h + 0 * t, r0 + h - t * h, r0 + 0 * t, r0 + t * h], axis=1)
    a, b, c, d, e, f = transform[:6]
    xs = a * cols + b * rows + c
    ys = d * cols + e * rows + f
    if crs == _WGS84 or crs.to_epsg() == 4326:
        lons, lats = xs, ys
    else:
        lon_list, lat_list = warp_points(crs, _WGS84, xs.ravel().tolist(), ys.ravel().tolist())
        lons = np.asarray(lon_list).reshape(xs.shape)
        lats = np.asarray(lat_list).reshape(ys.shape)
    return lons, lats


def _bbox_from_points(lons: np.ndarray, lats: np.ndarray) -> tuple[float, float, float, float]:
    west, east = float(np.min(lons)), float(np.max(lons))
    if east - west > 180.0 and east - west < 360.0:  # crosses the antimeridian: RFC 7946 west > east
        shifted = np.where(lons < 0, lons + 360.0, lons)
        west, east = float(np.min(shifted)), float(np.max(shifted))
        west = west - 360.0 if west > 180.0 else west
        east = east - 360.0 if east > 180.0 else east
    return (west, float(np.min(lats)), east, float(np.max(lats)))


def _tile_specs(
    crs: CRS, transform: Affine, width: int, height: int, tile_size_px: int, overlap_px: int
) -> tuple[list[TileSpec], int, int]:
    col_offsets = grid_offsets(width, tile_size_px, overlap_px)
    row_offsets = grid_offsets(height, tile_size_px, overlap_px)
    tile_w, tile_h = min(tile_size_px, width), min(tile_size_px, height)
    windows = [(c, r, tile_w, tile_h) for r in row_offsets for c in col_offsets]
    per_edge = 4
    lons, lats = _edge_points_4326(crs, transform, windows, per_edge=per_edge)
    corners = [0, per_edge, 2 * per_edge, 3 * per_edge]
    tiles = []
    for index, (col_off, row_off, w, h) in enumerate(windows):
        ring = [[float(lons[index, k]), float(lats[index, k])] for k in corners]
        if _signed_area(ring) < 0:  # a mirrored transform: keep RFC 7946's counterclockwise exterior ring
            ring.reverse()
        ring.append(ring[0])
        tiles.append(
            TileSpec(
                row=index // len(col_offsets),
                col=index % len(col_offsets),
                col_off=col_off,
                row_off=row_off,
                width=w,
                height=h,
                bbox_4326=_bbox_from_points(lons[index], lats[index]),
                footprint_4326={"type": "Polygon", "coordinates": [ring]},
            )
        )
    return tiles, len(row_offsets), len(col_offsets)


def _signed_area(ring: list[list[float]]) -> float:
    xs = np.array([p[0] for p in ring])
    ys = np.array([p[1] for p in ring])
    return float(np.sum(xs * np.roll(ys, -1) - np.roll(xs, -1) * ys) / 2)


def _footprint(dataset: DatasetReader, crs: CRS, per_edge: int = 16) -> Polygon:
    """The raster's outline in ``crs`` (edges densified so curved reprojected edges stay accurate)."""
    win = np.array([[0, 0, dataset.width, dataset.height]], dtype=np.float64)
    t = np.arange(per_edge, dtype=np.float64) / per_edge
    w, h = win[0, 2], win[0, 3]
    cols = np.concatenate([t * w, np.full(per_edge, w), w - t * w, np.zeros(per_edge)])
    rows = np.concatenate([np.full(per_edge, h), h - t * h, np.zeros(per_edge), t * h])
    xs, ys = dataset.transform @ (cols, rows)
    if dataset.crs != crs:
        xs, ys = warp_points(dataset.crs, crs, list(xs), list(ys))
    polygon = Polygon(list(zip(xs, ys, strict=True)))
    return polygon if polygon.is_valid else shapely.make_valid(polygon)


def _validate_tiling(tile_size_px: int, overlap_px: int) -> None:
    if not MIN_TILE_SIZE_PX <= tile_size_px <= MAX_TILE_SIZE_PX:
        raise ImageryError(
            N_("tile size must be between %(min)d and %(max)d px"), min=MIN_TILE_SIZE_PX, max=MAX_TILE_SIZE_PX
        )
    if not 0 <= overlap_px < tile_size_px:
        raise ImageryError(N_("overlap must be at least 0 px and smaller than the tile size"))


def _pair_grid(
    before: DatasetReader, after: DatasetReader
) -> tuple[CRS, Affine, int, int, float, BaseGeometry]:
    """Common grid of a pair: footprint intersection, finer resolution, local projected CRS."""
    if before.crs.is_projected:
        grid_crs = before.crs
    else:
        fb, fa = _footprint(before, _WGS84), _footprint(after, _WGS84)
        inter = fb.intersection(fa)
        if inter.is_empty or inter.area == 0:
            raise ImageryError(N_("the two images do not overlap"))
        minx, miny, maxx, maxy = inter.bounds
        # A UTM zone is only sensible for a regional extent; continental pairs stay on the before's grid.
        grid_crs = _utm_crs(inter.centroid.x, inter.centroid.y) if maxx - minx <= 30 else before.crs
    footprint_before, footprint_after = _footprint(before, grid_crs), _footprint(after, grid_crs)
    intersection = footprint_before.intersection(footprint_after)
    if intersection.is_empty or intersection.area <= 0:
        raise ImageryError(N_("the two images do not overlap"))

    def native_res(dataset: DatasetReader) -> tuple[float, float]:
        if dataset.crs == grid_crs:
            return abs(dataset.transform.a), abs(dataset.transform.e)
        transform, _, _ = calculate_default_transform(
            dataset.crs, grid_crs, dataset.width, dataset.height, *dataset.bounds
        )
        return abs(transform.a), abs(transform.e)

    res_before, res_after = native_res(before), native_res(after)
    minx, miny, maxx, maxy = intersection.bounds
    before_on_grid = (
        before.crs == grid_crs
        and before.transform.b == 0
        and before.transform.d == 0
        and before.transform.e < 0
    )
    if before_on_grid and res_before[0] <= res_after[0] * 1.0001 and res_before[1] <= res_after[1] * 1.0001:
        # The before image is at least as fine: keep its own pixel grid, so it is read without resampling.
        bt = before.transform
        col0 = math.floor((minx - bt.c) / bt.a + 1e-6)
        col1 = math.ceil((maxx - bt.c) / bt.a - 1e-6)
        row0 = math.floor((maxy - bt.f) / bt.e + 1e-6)
        row1 = math.ceil((miny - bt.f) / bt.e - 1e-6)
        transform = bt @ Affine.translation(col0, row0)
        width, height = col1 - col0, row1 - row0
    else:
        res = min(*res_before, *res_after)
        transform = Affine(res, 0.0, minx, 0.0, -res, maxy)
        width = max(1, math.ceil((maxx - minx) / res - 1e-6))
        height = max(1, math.ceil((maxy - miny) / res - 1e-6))
    area = shape(
        transform_geom(
            grid_crs, _EQUAL_AREA_CRS, shapely.segmentize(intersection, _segment_len(intersection))
        )
    ).area
    smaller = min(footprint_before.area, footprint_after.area)
    if min(width, height) < MIN_PAIR_OVERLAP_PX and intersection.area < 0.5 * smaller:
        # Two tiny images may share all they have; two ordinary ones sharing a strip are the wrong pair.
        raise ImageryError(
            N_(
                "the two images overlap on only %(width)dx%(height)d px (%(km2)s km²); a before/after pair "
                "needs at least %(min)d px in common each way: check that they show the same place"
            ),
            width=width,
            height=height,
            km2=f"{area / 1e6:,.1f}",
            min=MIN_PAIR_OVERLAP_PX,
        )
    return grid_crs, transform, width, height, float(area), intersection


def plan_grid(
    before: str | Path,
    after: str | Path | None = None,
    *,
    tile_size_px: int = 256,
    overlap_px: int = 32,
    aoi: dict[str, Any] | str | bytes | None = None,
) -> GridPlan:
    """Plan the tile grid of a scene (its own pixel grid) or a pair (common grid over their intersection)."""
    _validate_tiling(tile_size_px, overlap_px)
    aoi_geometry = parse_aoi(aoi) if aoi is not None else None
    with _open_checked(before) as before_ds:
        if after is None:
            crs, transform, width, height = (
                before_ds.crs,
                before_ds.transform,
                before_ds.width,
                before_ds.height,
            )
            overlap_area_m2, resampling, overlap = None, "nearest", None
        else:
            with _open_checked(after) as after_ds:
                crs, transform, width, height, overlap_area_m2, overlap = _pair_grid(before_ds, after_ds)
            resampling = "bilinear"
    if width * height > MAX_PIXELS:
        raise ImageryError(
            N_("the common grid of the pair would be %(width)dx%(height)d px, more than the limit"),
            width=width,
            height=height,
        )
    tiles, grid_rows, grid_cols = _tile_specs(crs, transform, width, height, tile_size_px, overlap_px)
    outside_overlap = 0
    if overlap is not None:
        # The grid is the overlap's bounding box: drop tiles that fall wholly outside the overlap itself.
        tiles, outside_overlap = _filter_tiles(tiles, _to_pixels(overlap, transform))
    outside = 0
    if aoi_geometry is not None:
        tiles, outside = _filter_by_aoi(tiles, aoi_geometry, crs, transform, width, height)
    return GridPlan(
        crs=_crs_string(crs),
        transform=tuple(transform)[:6],  # type: ignore[arg-type]
        width=width,
        height=height,
        tile_size_px=tile_size_px,
        overlap_px=overlap_px,
        tiles=tiles,
        overlap_area_m2=overlap_area_m2,
        tiles_outside_aoi=outside,
        paired=after is not None,
        grid_rows=grid_rows,
        grid_cols=grid_cols,
        bounds_4326=_corner_bounds_4326(crs, transform, width, height),  # type: ignore[arg-type]
        resampling=resampling,
        extra={"tiles_outside_overlap": outside_overlap},
    )


def _to_pixels(geometry: BaseGeometry, transform: Affine) -> BaseGeometry:
    inverse = ~transform
    pixels = affinity.affine_transform(
        geometry, [inverse.a, inverse.b, inverse.d, inverse.e, inverse.c, inverse.f]
    )
    return pixels if pixels.is_valid else shapely.make_valid(pixels)


def _filter_tiles(tiles: list[TileSpec], area_pixels: BaseGeometry) -> tuple[list[TileSpec], int]:
    """Tiles sharing some area with ``area_pixels`` (grid pixel coordinates), and how many do not."""
    if not tiles:
        return tiles, 0
    boxes = shapely.box(
        np.array([t.col_off for t in tiles]),
        np.array([t.row_off for t in tiles]),
        np.array([t.col_off + t.width for t in tiles]),
        np.array([t.row_off + t.height for t in tiles]),
    )
    shapely.prepare(area_pixels)
    keep = shapely.intersects(area_pixels, boxes) & ~shapely.touches(area_pixels, boxes)
    kept = [tile for tile, flag in zip(tiles, keep, strict=True) if flag]
    return kept, len(tiles) - len(kept)


def _filter_by_aoi(
    tiles: list[TileSpec], aoi: BaseGeometry, crs: CRS, transform: Affine, width: int, height: int
) -> tuple[list[TileSpec], int]:
    # Compare in the grid's pixel space, where tiles are exact rectangles.
    aoi_grid = shape(transform_geom(_WGS84, crs, shapely.segmentize(aoi, _segment_len(aoi))))
    aoi_pixels = _to_pixels(aoi_grid, transform)
    if not aoi_pixels.intersects(shapely.box(0, 0, width, height)):
        raise ImageryError(N_("the area of interest does not touch the imagery"))
    kept, outside = _filter_tiles(tiles, aoi_pixels)
    if not kept:
        raise ImageryError(N_("the area of interest does not touch the imagery"))
    return kept, outside


# --------------------------------------------------------------------------------------------- rendering


def _representable(nodata: float | None, dtype: np.dtype) -> Any:
    """Nodata as a ``dtype`` scalar; None when NaN (caught as non-finite) or out of the type's range."""
    if nodata is None or math.isnan(nodata):
        return None
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not (info.min <= nodata <= info.max) or nodata != int(nodata):
            return None
    return dtype.type(nodata)


def _percentiles_2_98(values: np.ndarray) -> tuple[float, float]:
    """2nd and 98th percentiles; a histogram for 8/16-bit data (no sort), NumPy's percentile otherwise."""
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    if values.dtype.itemsize <= 2 and values.dtype.kind in "iu":
        base = int(values.min())
        counts = np.bincount((values.astype(np.int32) - base).ravel())
        cumulative = np.cumsum(counts)
        lo, hi = np.searchsorted(cumulative, [0.02 * values.size, 0.98 * values.size])
        return float(lo + base), float(hi + base)
    lo, hi = np.percentile(values, [2, 98])
    return float(lo), float(hi)


class _Layer:
    """One date of a plan: reads plan-grid windows as display bands plus a validity mask."""

    def __init__(self, path: str | Path, plan: GridPlan) -> None:
        self.dataset = _open_checked(path)
        self.name = Path(path).name
        self.vrt: WarpedVRT | None = None
        self.bands, alpha = _band_roles(self.dataset)
        self.offset = self._aligned_offset(plan)
        flags = self.dataset.mask_flag_enums[self.bands[0] - 1]
        self.nodata = self.dataset.nodata
        self.is_float = np.dtype(self.dataset.dtypes[self.bands[0] - 1]).kind == "f"
        if self.offset is not None:
            self.reader: DatasetReader | WarpedVRT = self.dataset
            self.alpha = alpha
            self.use_mask_band = alpha is None and MaskFlags.per_dataset in flags
        else:
            params = plan.warp_params()
            kwargs: dict[str, Any] = {}
            if alpha is None:
                kwargs["add_alpha"] = True  # marks pixels outside the source, whatever its nodata is
            self.vrt = WarpedVRT(self.dataset, **params, **kwargs)
            self.reader = self.vrt
            self.alpha = alpha if alpha is not None else self.vrt.count
            self.use_mask_band = False
        self.read_indexes = [*self.bands, *([self.alpha] if self.alpha else [])]
        self.dtype = np.dtype(self.dataset.dtypes[self.bands[0] - 1])
        self.nodata_value = _representable(self.nodata, self.dtype)
        self.lut: np.ndarray | None = None
        self.floor: list[Any] = []
        self.lo = np.zeros(len(self.bands), dtype=np.float32)
        self.scale = np.ones(len(self.bands), dtype=np.float32)

    def _aligned_offset(self, plan: GridPlan) -> tuple[int, int] | None:
        """Integer (col, row) offset of the plan grid in the source's grid, or None if it needs warping."""
        ds, grid = self.dataset, plan.affine
        if abs(abs(ds.transform.a) - abs(grid.a)) > 1e-9 * abs(grid.a) + 1e-12:
            return None
        cols = np.array([0.0, plan.width, plan.width, 0.0, plan.width / 2])
        rows = np.array([0.0, 0.0, plan.height, plan.height, plan.height / 2])
        xs, ys = grid @ (cols, rows)
        plan_crs = CRS.from_user_input(plan.crs)
        if plan_crs != ds.crs:
            xs, ys = warp_points(plan_crs, ds.crs, list(xs), list(ys))
        src_cols, src_rows = ~ds.transform @ (np.asarray(xs), np.asarray(ys))
        dc, dr = np.asarray(src_cols) - cols, np.asarray(src_rows) - rows
        if np.ptp(dc) > 1e-3 or np.ptp(dr) > 1e-3:
            return None
        col_shift, row_shift = round(float(dc[0])), round(float(dr[0]))
        if abs(dc[0] - col_shift) > 1e-3 or abs(dr[0] - row_shift) > 1e-3:
            return None
        return col_shift, row_shift

    def close(self) -> None:
        if self.vrt is not None:
            self.vrt.close()
        self.dataset.close()

    def read(self, window: Window, out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(bands x h x w pixels, h x w validity) of a plan-grid window; outside the source is invalid."""
        col_off, row_off = int(window.col_off), int(window.row_off)
        width, height = int(window.width), int(window.height)
        try:
            if self.offset is None:
                return self._read_from(self.reader, Window(col_off, row_off, width, height), out_shape)
            # Direct read: clip the window to the source and pad, cheaper than a boundless (VRT) read.
            src_col, src_row = col_off + self.offset[0], row_off + self.offset[1]
            c0, r0 = max(src_col, 0), max(src_row, 0)
            c1 = min(src_col + width, self.dataset.width)
            r1 = min(src_row + height, self.dataset.height)
            if c0 == src_col and r0 == src_row and c1 - c0 == width and r1 - r0 == height:
                return self._read_from(self.dataset, Window(c0, r0, width, height), out_shape)
            shape_hw = out_shape or (height, width)
            data = np.zeros((len(self.bands), *shape_hw), dtype=self.dtype)
            valid = np.zeros(shape_hw, dtype=bool)
            if c1 <= c0 or r1 <= r0:
                return data, valid
            sy, sx = shape_hw[0] / height, shape_hw[1] / width
            y0, y1 = round((r0 - src_row) * sy), round((r1 - src_row) * sy)
            x0, x1 = round((c0 - src_col) * sx), round((c1 - src_col) * sx)
            if y1 > y0 and x1 > x0:
                part, part_valid = self._read_from(
                    self.dataset, Window(c0, r0, c1 - c0, r1 - r0), (y1 - y0, x1 - x0)
                )
                data[:, y0:y1, x0:x1] = part
                valid[y0:y1, x0:x1] = part_valid
            return data, valid
        except RasterioError as exc:
            raise ImageryError(
                f"{self.name} is damaged: its pixels cannot be read ({gdal_reason(exc, self.dataset.name)})"
            ) from exc

    def _read_from(
        self, reader: DatasetReader | WarpedVRT, window: Window, out_shape: tuple[int, int] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        kwargs: dict[str, Any] = {"window": window}
        if out_shape is not None:
            kwargs["out_shape"] = (len(self.read_indexes), *out_shape)
        stack = reader.read(self.read_indexes, **kwargs)
        data = stack[: len(self.bands)]
        if self.alpha:
            valid = stack[len(self.bands)] > 0
        elif self.use_mask_band:
            mask_kwargs = dict(kwargs)
            if out_shape is not None:
                mask_kwargs["out_shape"] = out_shape
            valid = reader.read_masks(self.bands[0], **mask_kwargs) > 0
        else:
            valid = np.ones(data.shape[1:], dtype=bool)
        if self.nodata_value is not None:
            # GDAL's rule for a per-band nodata value: a pixel is missing when every band holds it
            missing = data[0] == self.nodata_value
            for band in data[1:]:
                missing &= band == self.nodata_value
            valid &= ~missing
        if self.is_float:
            for band in data:
                valid &= np.isfinite(band)
        return data, valid

    # ---- contrast stretch: one per scene and date, so neighbouring tiles and both dates look consistent
    def fit_stretch(self, plan: GridPlan) -> None:
        samples = self._stretch_samples(plan)
        lows, highs = [], []
        for band in samples:
            lo, hi = _percentiles_2_98(band)
            if hi <= lo:  # a flat band: show it mid-grey rather than black, which means "no data"
                lo, hi = lo - 1.0, lo + 1.0
            lows.append(float(lo))
            highs.append(float(hi))
        if len(lows) >= 3:
            # Colour scenes get one linked stretch for all bands: separate ones would grey out a sandy,
            # low-contrast scene (each band stretched to full range) and change the hue between scenes.
            lows = [min(lows)] * len(lows)
            highs = [max(highs)] * len(highs)
        self.lo = np.array(lows, dtype=np.float32)
        self.scale = np.array([255.0 / (h - lo) for lo, h in zip(lows, highs, strict=True)], dtype=np.float32)
        if self.dtype in (np.uint8, np.int8):
            info = np.iinfo(self.dtype)
            values = np.arange(info.min, info.max + 1, dtype=np.float32)
            if self.dtype == np.int8:  # cv2.LUT indexes by the unsigned byte: reorder to offset binary
                values = np.roll(values, 128)
            self.lut = np.stack(
                [
                    np.clip((values - lo) * scale + 0.5, 0, 255).astype(np.uint8)
                    for lo, scale in zip(self.lo, self.scale, strict=True)
                ]
            )
        if self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            self.floor = [self.dtype.type(min(max(math.floor(lo), info.min), info.max)) for lo in self.lo]

    def share_stretch(self, other: _Layer) -> None:
        """Use another handle's stretch (same date, another thread), so every tile of a date matches."""
        self.lo, self.scale, self.lut, self.floor = other.lo, other.scale, other.lut, other.floor

    def _stretch_samples(self, plan: GridPlan) -> list[np.ndarray]:
        """Valid pixels per band from a bounded read: the whole grid if small, else spread windows."""
        total = plan.width * plan.height
        if total <= STRETCH_SAMPLE_PX:
            windows = [Window(0, 0, plan.width, plan.height)]
        else:
            side = 256
            per_axis = max(1, int(math.sqrt(STRETCH_SAMPLE_PX / (side * side))))
            cols = np.linspace(0, max(0, plan.width - side), per_axis).astype(int)
            rows = np.linspace(0, max(0, plan.height - side), per_axis).astype(int)
            windows = [
                Window(int(c), int(r), min(side, plan.width), min(side, plan.height))
                for r in rows
                for c in cols
            ]
        per_band: list[list[np.ndarray]] = [[] for _ in self.bands]
        for window in windows:
            data, valid = self.read(window)
            for index in range(len(self.bands)):
                per_band[index].append(data[index][valid])
        return [np.concatenate(parts) if parts else np.zeros(0) for parts in per_band]

    def to_display(self, data: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(h x w x 3 BGR image for OpenCV or h x w grey, its R,G,B or grey channels); invalid is black."""
        if self.lut is not None and self.dtype == np.uint8:
            channels = [cv2.LUT(data[i], self.lut[i]) for i in range(len(self.bands))]
        elif self.lut is not None and self.dtype == np.int8:
            channels = [cv2.LUT(data[i].view(np.uint8), self.lut[i]) for i in range(len(self.bands))]
        elif self.dtype in (np.uint16, np.int16, np.int32):
            # clamp below at the low percentile, then one SIMD pass of OpenCV's scale-and-saturate to uint8
            channels = [
                cv2.convertScaleAbs(
                    np.maximum(data[i], self.floor[i]),
                    alpha=float(self.scale[i]),
                    beta=-float(self.lo[i] * self.scale[i]),
                )
                for i in range(len(self.bands))
            ]
        else:
            channels = [
                np.clip(
                    (np.nan_to_num(data[i].astype(np.float32)) - self.lo[i]) * self.scale[i] + 0.5, 0, 255
                ).astype(np.uint8)
                for i in range(len(self.bands))
            ]
        image = channels[0] if len(channels) == 1 else cv2.merge(channels[::-1])
        if not valid.all():
            mask = valid.view(np.uint8)
            image = cv2.bitwise_and(image, image, mask=mask)
            channels = [cv2.bitwise_and(c, c, mask=mask) for c in channels]
        return image, channels


def _encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV only fails on impossible shapes
        raise ImageryError("could not encode a JPEG tile")
    return buffer.tobytes()


def _cloudy(channels: list[np.ndarray], valid: np.ndarray) -> bool:
    """Likely cloud: many valid pixels both bright and unsaturated (a flag for volunteers, not a skip)."""
    valid = valid[::4, ::4]
    count = int(np.count_nonzero(valid))
    if count == 0:
        return False
    sampled = [channel[::4, ::4] for channel in channels]
    if len(sampled) == 1:
        bright = sampled[0] > 220
    else:
        low = np.minimum(np.minimum(sampled[0], sampled[1]), sampled[2])
        high = np.maximum(np.maximum(sampled[0], sampled[1]), sampled[2])
        bright = (low > 200) & ((high - low) < 30)
    return bool(np.count_nonzero(bright & valid) > CLOUDY_FRACTION * count)


def _finish_tile(
    layers: list[_Layer],
    spec: TileSpec,
    reads: list[tuple[np.ndarray, np.ndarray]],
    paired: bool,
    jpeg_quality: int,
    min_valid_fraction: float,
) -> RenderedTile:
    valid_fraction = min(float(valid.mean()) for _, valid in reads)
    if valid_fraction < min_valid_fraction:
        return RenderedTile(spec, b"", b"" if paired else None, valid_fraction, False, "empty")
    shown = [layer.to_display(data, valid) for layer, (data, valid) in zip(layers, reads, strict=True)]
    jpegs = [_encode_jpeg(image, jpeg_quality) for image, _ in shown]
    cloudy = any(_cloudy(channels, valid) for (_, channels), (_, valid) in zip(shown, reads, strict=True))
    return RenderedTile(spec, jpegs[0], jpegs[1] if paired else None, valid_fraction, cloudy, None)


def iter_rendered_tiles(
    before: str | Path,
    after: str | Path | None,
    plan: GridPlan,
    *,
    jpeg_quality: int = 80,
    min_valid_fraction: float = 0.05,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> Iterator[RenderedTile]:
    """Render every tile of ``plan`` as JPEG(s), one window at a time: memory stays flat for any scene size.

    Tiles come out in ``plan.tiles`` order. Tiles with too few valid pixels (in either date) are still
    yielded, with ``skip_reason="empty"`` and empty JPEG bytes, so the caller can count and report them.

    Decoding compressed blocks dominates, so ``workers`` threads (default: one per core, at most 4) each take
    a band of grid columns with their own dataset handles (GDAL handles are not thread-safe). A column band
    keeps each block's decode in one thread and its cache: only blocks on band borders are decoded twice,
    whereas dealing tiles out round-robin would decode most blocks twice. GDAL, NumPy and OpenCV release the
    GIL. Each thread runs at most ``_QUEUE_TILES`` tiles ahead, so memory does not depend on the scene size.
    """
    if (after is None) == plan.paired:
        raise ImageryError(
            "the plan was made for a pair" if plan.paired else "the plan was made for one image"
        )
    paths = [before] if after is None else [before, after]
    paired = after is not None
    total = len(plan.tiles)
    columns = sorted({tile.col for tile in plan.tiles})
    if workers is None:  # threads pay off once there are enough tiles to amortise their own dataset handles
        workers = min(4, os.cpu_count() or 1) if total >= _MIN_TILES_PER_THREAD * 2 else 1
    workers = max(1, min(workers, len(columns) // 2))
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        layers: list[_Layer] = []
        try:
            for path in paths:
                layers.append(_Layer(path, plan))
            for layer in layers:
                layer.fit_stretch(plan)
            if workers == 1:
                for done, spec in enumerate(plan.tiles, start=1):
                    reads = [layer.read(spec.window) for layer in layers]
                    yield _finish_tile(layers, spec, reads, paired, jpeg_quality, min_valid_fraction)
                    if progress is not None:
                        progress(done, total)
                return
            band_of = {col: index * workers // len(columns) for index, col in enumerate(columns)}
            yield from _render_in_column_bands(
                paths, plan, layers, band_of, workers, paired, jpeg_quality, min_valid_fraction, progress
            )
        finally:
            for layer in layers:
                layer.close()


_QUEUE_TILES = 64
_MIN_TILES_PER_THREAD = 64


def _render_in_column_bands(
    paths: list[str | Path],
    plan: GridPlan,
    stretched: list[_Layer],
    band_of: dict[int, int],
    workers: int,
    paired: bool,
    jpeg_quality: int,
    min_valid_fraction: float,
    progress: Callable[[int, int], None] | None,
) -> Iterator[RenderedTile]:
    stop = threading.Event()
    queues: list[queue.Queue[RenderedTile | BaseException]] = [
        queue.Queue(_QUEUE_TILES) for _ in range(workers)
    ]

    def hand_over(band: int, item: RenderedTile | BaseException) -> bool:
        """Queue ``item`` for the consumer; False when the consumer has stopped listening."""
        while not stop.is_set():
            try:
                queues[band].put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(band: int) -> None:
        layers: list[_Layer] = []
        try:
            for path, source in zip(paths, stretched, strict=True):
                layer = _Layer(path, plan)
                layer.share_stretch(source)
                layers.append(layer)
            for spec in plan.tiles:
                if band_of[spec.col] == band:
                    reads = [layer.read(spec.window) for layer in layers]
                    tile = _finish_tile(layers, spec, reads, paired, jpeg_quality, min_valid_fraction)
                    if not hand_over(band, tile):
                        return
        except BaseException as exc:  # re-raised by the consumer, in its own thread
            hand_over(band, exc)
        finally:
            for layer in layers:
                layer.close()

    threads = [
        threading.Thread(target=work, args=(band,), name=f"imagery-tiles-{band}", daemon=True)
        for band in range(workers)
    ]
    for thread in threads:
        thread.start()
    try:
        for done, spec in enumerate(plan.tiles, start=1):
            item = queues[band_of[spec.col]].get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if progress is not None:
                progress(done, len(plan.tiles))
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def render_overview(
    before: str | Path,
    plan: GridPlan | None = None,
    *,
    after: str | Path | None = None,
    max_size_px: int = 768,
    jpeg_quality: int = 80,
) -> bytes:
    """JPEG of the whole plan grid (the before date, or ``after`` when given), with the tiles' stretch.

    A tile's place in it is ``(col_off / plan.width, row_off / plan.height)`` to ``+ width/height``.
    """
    source = after if after is not None else before
    if plan is None:
        plan = plan_grid(before)
    scale = min(1.0, max_size_px / max(plan.width, plan.height))
    out_shape = (max(1, round(plan.height * scale)), max(1, round(plan.width * scale)))
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        layer = _Layer(source, plan)
        try:
            layer.fit_stretch(plan)
            data, valid = layer.read(Window(0, 0, plan.width, plan.height), out_shape=out_shape)
            return _encode_jpeg(layer.to_display(data, valid)[0], jpeg_quality)
        finally:
            layer.close()
