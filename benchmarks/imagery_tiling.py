"""Imagery tiling throughput and memory: tasks.imagery against rio-tiler on the same scenes and windows.

Run: ``.venv/bin/python benchmarks/imagery_tiling.py [--quick]``. Each side renders the same 256-px JPEG tiles
(same grid, same 2-98 % stretch, quality 80) in its own fresh interpreter, so peak RSS (VmHWM) is its alone.
Scenes: (a) RGB.byte.tif, (b) a generated 8192 x 8192 3-band uint16 scene, (c) the RGB.byte + RGB2.byte
pair, and (d, unless --quick) a generated 20000 x 20000 scene, to show memory does not grow with the scene.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
GEOTIFF_DIR = REPO_ROOT.parent / "shared" / "media" / "geotiff"
sys.path.insert(0, str(REPO_ROOT))


def peak_rss_mb() -> float:
    """Peak RSS of this process image (VmHWM; ru_maxrss would include the forking parent's peak)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_scene(path: Path, size: int) -> None:
    from fixtures.synthetic_imagery import write_large_uint16_scene

    write_large_uint16_scene(path, size)


# --------------------------------------------------------------------------------------------- workers


def run_corroborate(before: str, after: str | None, repeats: int) -> dict[str, Any]:
    from tasks.imagery import iter_rendered_tiles, plan_grid

    plan_seconds = render_seconds = 0.0
    tiles = jpeg_bytes = 0
    for _ in range(repeats):
        started = time.perf_counter()
        plan = plan_grid(before, after)
        planned = time.perf_counter()
        for tile in iter_rendered_tiles(before, after, plan):
            if tile.skip_reason is None:
                tiles += 1
                jpeg_bytes += len(tile.before_jpeg)
        plan_seconds += planned - started
        render_seconds += time.perf_counter() - planned
    return {
        "tiles": tiles,
        "seconds": render_seconds,
        "plan_seconds": plan_seconds,
        "kb_per_tile": jpeg_bytes / max(tiles, 1) / 1024,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_rio_tiler(before: str, after: str | None, repeats: int) -> dict[str, Any]:
    import warnings

    import numpy as np
    from rasterio.crs import CRS
    from rio_tiler.io import Reader

    from tasks.imagery import plan_grid

    warnings.simplefilter("ignore")  # NoOverviewWarning on every file
    plan = plan_grid(before, after)  # the same windows, planned outside the timed part
    crs = CRS.from_user_input(plan.crs)
    grid = plan.affine
    seconds = 0.0
    tiles = jpeg_bytes = 0
    for _ in range(repeats):
        started = time.perf_counter()
        readers = [Reader(path) for path in ([before] if after is None else [before, after])]
        stretches = []
        for reader in readers:
            # rio-tiler's own decimated read for the 2-98 % stretch, as tasks.imagery estimates one per date
            preview = reader.preview(max_size=1024)
            bands = preview.array[:3]
            stretches.append([tuple(np.percentile(band.compressed(), [2, 98])) for band in bands])
        for spec in plan.tiles:
            west, north = grid @ (spec.col_off, spec.row_off)
            east, south = grid @ (spec.col_off + spec.width, spec.row_off + spec.height)
            for reader, stretch in zip(readers, stretches, strict=True):
                image = reader.part(
                    (west, south, east, north),
                    dst_crs=crs,
                    bounds_crs=crs,
                    width=spec.width,
                    height=spec.height,
                    indexes=tuple(range(1, len(stretch) + 1)),
                )
                image.rescale(in_range=stretch)
                jpeg = image.render(img_format="JPEG", quality=80, add_mask=False)
                if reader is readers[0]:
                    jpeg_bytes += len(jpeg)
            tiles += 1
        for reader in readers:
            reader.close()
        seconds += time.perf_counter() - started
    return {
        "tiles": tiles,
        "seconds": seconds,
        "kb_per_tile": jpeg_bytes / max(tiles, 1) / 1024,
        "peak_rss_mb": peak_rss_mb(),
    }


def measure(side: str, before: Path, after: Path | None, repeats: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", side, "--before", str(before), "--repeats", str(repeats)]
    if after is not None:
        command += ["--after", str(after)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 20000 x 20000 scene")
    parser.add_argument("--worker", choices=["corroborate", "rio-tiler"], help=argparse.SUPPRESS)
    parser.add_argument("--before", help=argparse.SUPPRESS)
    parser.add_argument("--after", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run = run_corroborate if args.worker == "corroborate" else run_rio_tiler
        print(json.dumps(run(args.before, args.after, args.repeats)))
        return

    with tempfile.TemporaryDirectory(prefix="imagery-bench-") as scratch:
        cases: list[tuple[str, Path, Path | None, int]] = [
            ("(a) RGB.byte.tif 791x718 uint8", GEOTIFF_DIR / "RGB.byte.tif", None, 30),
        ]
        started = time.perf_counter()
        scene_8k = Path(scratch) / "scene_8192.tif"
        write_scene(scene_8k, 8192)
        print(f"generated 8192x8192x3 uint16 scene in {time.perf_counter() - started:.1f} s", flush=True)
        cases.append(("(b) generated 8192x8192 uint16", scene_8k, None, 1))
        cases.append(
            ("(c) pair RGB.byte + RGB2.byte", GEOTIFF_DIR / "RGB.byte.tif", GEOTIFF_DIR / "RGB2.byte.tif", 30)
        )
        if not args.quick:
            started = time.perf_counter()
            scene_20k = Path(scratch) / "scene_20000.tif"
            write_scene(scene_20k, 20_000)
            print(
                f"generated 20000x20000x3 uint16 scene in {time.perf_counter() - started:.1f} s", flush=True
            )
            cases.append(("(d) generated 20000x20000 uint16", scene_20k, None, 1))

        header = (
            f"{'scene':36} {'tiles':>6} {'corroborate t/s':>15} {'rio-tiler t/s':>13} {'ratio':>6} "
            f"{'corroborate MB':>14} {'rio-tiler MB':>12} {'KB/tile':>7}"
        )
        print(header)
        print("-" * len(header))
        for label, before, after, repeats in cases:
            ours = measure("corroborate", before, after, repeats)
            theirs = measure("rio-tiler", before, after, repeats)
            ours_rate = ours["tiles"] / ours["seconds"]
            theirs_rate = theirs["tiles"] / theirs["seconds"]
            print(
                f"{label:36} {ours['tiles'] // repeats:>6} {ours_rate:>15.0f} {theirs_rate:>13.0f} "
                f"{ours_rate / theirs_rate:>5.1f}x {ours['peak_rss_mb']:>14.0f} {theirs['peak_rss_mb']:>12.0f} "
                f"{ours['kb_per_tile']:>7.1f}",
                flush=True,
            )
        print(
            "tiles/s: 256-px JPEG tiles (a pair counts one tile per before/after couple), stretch included;"
        )
        print("MB: peak RSS of a fresh interpreter doing only that run (imports included).")


if __name__ == "__main__":
    main()
