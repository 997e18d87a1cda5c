"""Base for management commands with the interface PRODUCT.md promises.

On success the last line of stdout is a one-line JSON summary and the exit code is 0; on bad input the
command prints one line `error: ...` on stderr and exits non-zero, leaving the database and storage as
they were.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError


class JsonCommand(BaseCommand):
    expected_errors: tuple[type[BaseException], ...] = (CommandError, ValueError, FileNotFoundError)

    def handle_json(self, *args: Any, **options: Any) -> dict[str, Any]:
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            summary = self.handle_json(*args, **options)
        except self.expected_errors as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            sys.stderr.write(f"error: {message}\n")
            sys.stderr.flush()
            raise SystemExit(1) from exc
        self.stdout.write(json.dumps(summary, default=str, ensure_ascii=False))

    def run_from_argv(self, argv: list[str]) -> None:
        try:
            super().run_from_argv(argv)
        except CommandError as exc:  # argument errors from the parser
            sys.stderr.write(f"error: {exc}\n")
            raise SystemExit(2) from exc
