"""manage.py export_evidence: write a BagIt evidence package of a campaign (or one evidence set)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from config.commands import JsonCommand
from tasks.models import Campaign
from verification import services


class Command(JsonCommand):
    help = "Write a self-verifying evidence package (BagIt 1.0) and optionally upload it to S3."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", required=True, help="campaign slug")
        parser.add_argument("--evidence-set", help="evidence set name (latest frozen version, else latest)")
        parser.add_argument("--out", required=True, help="package folder to create (must not exist)")
        parser.add_argument("--s3-bucket", help="upload the package as one tar to this bucket")
        parser.add_argument("--s3-prefix", default="", help="key prefix in the bucket")
        parser.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: S3_ENDPOINT_URL)")
        parser.add_argument("--object-lock-mode", choices=["GOVERNANCE", "COMPLIANCE"])
        parser.add_argument("--object-lock-days", type=int, default=0)
        parser.add_argument("--legal-hold", action="store_true")
        parser.add_argument("--organization", default="", help="Source-Organization in bag-info.txt")

    def handle_json(self, *args: Any, **options: Any) -> dict[str, Any]:
        campaign = Campaign.objects.filter(slug=options["campaign"]).first()
        if campaign is None:
            raise CommandError(f"no campaign {options['campaign']!r}")
        if options["s3_prefix"] and not options["s3_bucket"]:
            raise CommandError("--s3-prefix needs --s3-bucket")
        if options["object_lock_mode"] and options["object_lock_days"] <= 0:
            raise CommandError("--object-lock-mode needs --object-lock-days N (N > 0)")
        s3 = (
            services.S3Target(
                bucket=options["s3_bucket"],
                prefix=options["s3_prefix"],
                endpoint_url=options["s3_endpoint_url"],
                lock_mode=options["object_lock_mode"],
                lock_days=options["object_lock_days"],
                legal_hold=options["legal_hold"],
            )
            if options["s3_bucket"]
            else None
        )
        summary = services.evidence_export(
            campaign=campaign,
            out=Path(options["out"]),
            evidence_set_name=options["evidence_set"],
            s3=s3,
            organization=options["organization"],
        )
        if s3 is not None and not summary["uploaded"]:
            # The package is complete on disk; say so in the summary, then fail on the upload.
            self.stdout.write(json.dumps(summary, default=str, ensure_ascii=False))
            sys.stdout.flush()
            raise CommandError(
                f"{summary['upload_error']}; the local package is kept at {summary['path']} (not uploaded)"
            )
        return summary
