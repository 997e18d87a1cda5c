"""manage.py ingest_imagery: a GeoTIFF (or before/after pair) into tile tasks of a campaign."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from config.commands import JsonCommand
from tasks import services
from tasks.models import Campaign


class Command(JsonCommand):
    help = "Split a GeoTIFF, or a before/after pair, into georeferenced tile tasks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("before", help="GeoTIFF (the 'before' date of a pair)")
        parser.add_argument("--campaign", required=True, help="campaign slug; created if it does not exist")
        parser.add_argument("--after", help="GeoTIFF of the 'after' date")
        parser.add_argument("--aoi", help="GeoJSON polygon or multipolygon: only tiles touching it are kept")
        parser.add_argument("--tile-size", type=int, default=256)
        parser.add_argument("--overlap", type=int, default=32)

    def handle_json(self, *args: Any, **options: Any) -> dict[str, Any]:
        before = Path(options["before"])
        after = Path(options["after"]) if options.get("after") else None
        for path in (before, after):
            if path is not None and not path.is_file():
                raise services.IngestError(f"{path}: no such file")
        aoi = None
        if options.get("aoi"):
            aoi_path = Path(options["aoi"])
            if not aoi_path.is_file():
                raise services.IngestError(f"{aoi_path}: no such file")
            aoi = aoi_path.read_text(encoding="utf-8", errors="replace")
        services.imagery_validate(
            before=before,
            after=after,
            aoi=aoi,
            tile_size_px=options["tile_size"],
            overlap_px=options["overlap"],
        )
        campaign = services.campaign_get_or_create(slug=options["campaign"], kind=Campaign.Kind.IMAGERY)
        return services.source_ingest_imagery(
            campaign=campaign,
            before=before,
            after=after,
            aoi=aoi,
            tile_size_px=options["tile_size"],
            overlap_px=options["overlap"],
        )
