"""manage.py verify_package: check a BagIt evidence package (manifests, payload, ledger chain and head)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from config.commands import JsonCommand
from verification import packages


class Command(JsonCommand):
    help = (
        "Exit 0 when an evidence package is intact; otherwise name the first file or ledger entry that fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="package folder")

    def handle_json(self, *args: Any, **options: Any) -> dict[str, Any]:
        root = Path(options["path"])
        problems = packages.package_verify(root)
        if problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise CommandError(f"{problems[0]}{more}")
        info = packages.read_bag_info(root)
        files, size = 0, 0
        for path in root.rglob("*"):
            if path.is_file():
                files += 1
                size += path.stat().st_size
        return {
            "path": str(root),
            "valid": True,
            "files": files,
            "bytes": size,
            "ledger_head_hash": info.get("Ledger-Head-Hash"),
            "external_identifier": info.get("External-Identifier"),
        }
