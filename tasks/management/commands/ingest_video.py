"""manage.py ingest_video: a video into segment tasks of a campaign."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from config.commands import JsonCommand
from tasks import services
from tasks.models import Campaign


class Command(JsonCommand):
    help = "Split a video into segment tasks at detected shot boundaries (and every N seconds)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("video")
        parser.add_argument("--campaign", required=True, help="campaign slug; created if it does not exist")
        parser.add_argument("--max-segment-seconds", type=float, default=10.0)

    def handle_json(self, *args: Any, **options: Any) -> dict[str, Any]:
        path = Path(options["video"])
        if not path.is_file():
            raise services.IngestError(f"{path}: no such file")
        services.video_validate(path=path)
        campaign = services.campaign_get_or_create(slug=options["campaign"], kind=Campaign.Kind.VIDEO)
        return services.source_ingest_video(
            campaign=campaign, path=path, max_segment_seconds=options["max_segment_seconds"]
        )
