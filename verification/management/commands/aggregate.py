"""`manage.py aggregate`: offline agreement scoring of a CSV of answers, or a campaign's consensus refit."""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from verification.aggregation import METHODS, aggregate_table

INPUT_COLUMNS = ("task", "worker", "label")
GOLD_COLUMNS = ("task", "label")
OUTPUT_COLUMNS = ("task", "label", "confidence", "n_answers", "agreement")


class InputError(Exception):
    """Bad input the user can fix; reported as one `error: ...` line on stderr with exit status 2."""


def _read_csv(path: str, columns: tuple[str, ...], what: str) -> list[tuple[str, ...]]:
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        with file.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise InputError(f"{what} file is empty: {path}")
            names = [name.strip() for name in header]
            missing = [c for c in columns if c not in names]
            if missing:
                raise InputError(
                    f"{what} file {path} lacks column(s) {', '.join(missing)}; "
                    f"expected a header with {','.join(columns)}"
                )
            positions = [names.index(c) for c in columns]
            rows = []
            for line_no, row in enumerate(reader, start=2):
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) < len(names):
                    raise InputError(f"{what} file {path}, line {line_no}: expected {len(names)} fields")
                values = tuple(row[p].strip() for p in positions)
                if any(v == "" for v in values):
                    raise InputError(f"{what} file {path}, line {line_no}: empty {'/'.join(columns)} value")
                rows.append(values)
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} file {path} is not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise InputError(f"{what} file {path} is not valid CSV: {exc}") from None
    if not rows:
        raise InputError(f"{what} file {path} has a header but no rows")
    return rows


def _write_atomically(path: str, rows: list[dict[str, Any]]) -> None:
    target = Path(path)
    if not target.parent.is_dir():
        raise InputError(f"output directory does not exist: {target.parent}")
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, then renamed into place
        "w", encoding="utf-8", newline="", dir=target.parent, prefix=f".{target.name}.", delete=False
    )
    try:
        writer = csv.writer(handle)
        writer.writerow(OUTPUT_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row["task"],
                    "" if row["label"] is None else row["label"],
                    f"{row['confidence']:.6f}",
                    row["n_answers"],
                    f"{row['agreement']:.6f}",
                ]
            )
        handle.close()
        os.replace(handle.name, target)
    except BaseException:
        handle.close()
        Path(handle.name).unlink(missing_ok=True)
        raise


class Command(BaseCommand):
    help = (
        "Agreement scoring. Offline: --input ANSWERS.csv (task,worker,label) --output CONSENSUS.csv "
        "[--method NAME] [--gold GOLD.csv (task,label)]. Campaign: --campaign SLUG recomputes its consensus."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--input", help="answers CSV with a header including task,worker,label")
        parser.add_argument(
            "--output", help="consensus CSV to write (task,label,confidence,n_answers,agreement)"
        )
        parser.add_argument("--method", default="auto", help=f"one of {', '.join(METHODS)} (default auto)")
        parser.add_argument("--gold", help="expert labels CSV with a header including task,label")
        parser.add_argument("--unsure-label", default="unsure", help="answer that carries no vote")
        parser.add_argument("--campaign", help="recompute the consensus of this campaign (slug)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            summary = self._run(options)
        except InputError as exc:
            self.stderr.write(f"error: {exc}")
            sys.exit(2)
        self.stdout.write(json.dumps(summary, sort_keys=True, default=str))

    def _run(self, options: dict[str, Any]) -> dict[str, Any]:
        if options.get("campaign"):
            if options.get("input") or options.get("output"):
                raise InputError("--campaign cannot be combined with --input/--output")
            return self._run_campaign(options["campaign"])
        if not options.get("input") or not options.get("output"):
            raise InputError("give --input ANSWERS.csv and --output CONSENSUS.csv, or --campaign SLUG")
        method = options["method"]
        if method not in METHODS:
            raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        started = time.perf_counter()
        answers = _read_csv(options["input"], INPUT_COLUMNS, "input")
        gold = None
        if options.get("gold"):
            gold_rows = _read_csv(options["gold"], GOLD_COLUMNS, "gold")
            gold = {task: label for task, label in gold_rows}
        unsure = options.get("unsure_label") or None
        rows = [(task, worker, label) for task, worker, label in answers]
        table = aggregate_table(rows, method=method, gold=gold, unsure_label=unsure)
        _write_atomically(options["output"], list(table))
        return {
            "tasks": len(table),
            "answers": len(answers),
            "workers": len(table.workers),
            "classes": [c for c in table.classes if c != unsure],
            "gold_tasks": len(gold or {}),
            "flagged_workers": len(table.flagged),
            "temperature": round(table.result.temperature, 4),
            "mean_confidence": round(float(table.result.confidence.mean()), 4) if len(table) else 0.0,
            "method": method,
            "output": str(options["output"]),
            "seconds": round(time.perf_counter() - started, 3),
        }

    def _run_campaign(self, slug: str) -> dict[str, Any]:
        from tasks.models import Campaign
        from verification.services import consensus_recompute_campaign

        try:
            campaign = Campaign.objects.get(slug=slug)
        except Campaign.DoesNotExist:
            raise InputError(f"no campaign with slug {slug!r}") from None
        return dict(consensus_recompute_campaign(campaign=campaign))
