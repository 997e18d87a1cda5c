"""manage.py verify_ledger: re-chain a campaign's ledger rows and compare them with the ledger head."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from config.commands import JsonCommand
from tasks.models import Campaign
from verification import services
from verification.models import LedgerEntry, LedgerHead


class Command(JsonCommand):
    help = "Exit 0 when the campaign's ledger is intact; otherwise name the first edited, deleted or moved entry."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", required=True, help="campaign slug")

    def handle_json(self, *args: Any, **options: Any) -> dict[str, Any]:
        campaign = Campaign.objects.filter(slug=options["campaign"]).first()
        if campaign is None:
            raise CommandError(f"no campaign {options['campaign']!r}")
        problem = services.ledger_verify(campaign=campaign)
        if problem is not None:
            raise CommandError(f"campaign {campaign.slug}: {problem}")
        head = LedgerHead.objects.filter(campaign=campaign).first()
        return {
            "campaign": campaign.slug,
            "valid": True,
            "entries": LedgerEntry.objects.filter(campaign=campaign).count(),
            "head_hash": head.head_hash if head else None,
        }
