"""Benchmark: export an evidence package of 50,000 tasks, 250,000 answers and 50,000 tile images.

Builds the dataset with bulk_create in a throwaway SQLite database under a temporary CORROBORATE_VAR_DIR
(the tiles are hard links to one small JPEG, so the dataset costs little disk), then runs
`manage.py export_evidence` in a child process and prints its wall-clock seconds and peak RSS next to the
targets (60 s, 500 MB), then `verify_package` on the result.

    .venv/bin/python benchmarks/export_package.py [--tasks 50000] [--answers-per-task 5] [--keep]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_SECONDS = 60.0
TARGET_RSS_MB = 500.0
TILE_POOL = 200


def build(n_tasks: int, answers_per_task: int, n_volunteers: int) -> None:
    import django

    django.setup()
    import uuid

    from django.conf import settings
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone
    from PIL import Image

    from tasks import services
    from tasks.models import Campaign, Source, Task, Volunteer
    from verification import ledger
    from verification.models import Answer, Consensus, LedgerEntry, LedgerHead

    call_command("migrate", verbosity=0)
    campaign = services.campaign_create(slug="bench", title="Export benchmark", kind=Campaign.Kind.IMAGERY)
    media_root = Path(settings.MEDIA_ROOT)
    # A pool of distinct small JPEGs, each hard-linked under many tile names (ext4 allows 65,000 links
    # per file, and the package links each tile once more).
    pool = []
    for index in range(TILE_POOL):
        path = media_root / "bench" / "pool" / f"tile{index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.new("RGB", (256, 256), (120, index % 256, 60)).save(buffer, "JPEG", quality=80)
        path.write_bytes(buffer.getvalue())
        pool.append(path)
    tile = pool[0]
    source = Source.objects.create(
        campaign=campaign,
        kind=Source.Kind.RASTER,
        file="bench/pool/tile0.jpg",
        original_name="scene.tif",
        sha256="a" * 64,
        size_bytes=tile.stat().st_size,
        metadata={"crs": "EPSG:32635", "bounds": [0, 0, 1, 1]},
        role="image",
        ready=True,
    )
    side = int(n_tasks**0.5) + 1
    step = 0.0025
    tasks = []
    for i in range(n_tasks):
        row, col = divmod(i, side)
        name = f"bench/tiles/{row}_{col}_before.jpg"
        os.makedirs(media_root / "bench" / "tiles", exist_ok=True)
        os.link(pool[i % TILE_POOL], media_root / name)
        w, n = 23.0 + col * step, 13.0 - row * step
        e, s = w + step, n - step
        tasks.append(
            Task(
                campaign=campaign,
                source=source,
                key=f"tile:{i}",
                kind=Task.Kind.TILE,
                grid_row=row,
                grid_col=col,
                window={"col_off": 0, "row_off": 0, "width": 256, "height": 256},
                bbox=[w, s, e, n],
                footprint={"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
                media={"before": name},
                status=Task.Status.RETIRED,
                answer_count=answers_per_task,
            )
        )
    Task.objects.bulk_create(tasks, batch_size=2000)
    task_ids = list(Task.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True))
    Consensus.objects.bulk_create(
        [
            Consensus(
                task_id=t,
                label="destroyed" if t % 3 == 0 else "intact",
                confidence=0.97,
                agreement=0.6 + 0.4 * ((t * 7) % 10) / 10,
                n_answers=answers_per_task,
                method="auto",
            )
            for t in task_ids
        ],
        batch_size=2000,
    )
    Volunteer.objects.bulk_create([Volunteer() for _ in range(n_volunteers)], batch_size=2000)
    volunteer_ids = list(Volunteer.objects.order_by("id").values_list("id", flat=True))
    head = LedgerHead.objects.get(campaign=campaign)
    prev, seq = head.head_hash, head.seq
    now = timezone.now()
    answers, entries = [], []
    with transaction.atomic():
        for index, task_id in enumerate(task_ids):
            for k in range(answers_per_task):
                volunteer_id = volunteer_ids[(index * answers_per_task + k) % len(volunteer_ids)]
                label = "destroyed" if (task_id + k) % 3 == 0 else "intact"
                answers.append(
                    Answer(
                        task_id=task_id,
                        volunteer_id=volunteer_id,
                        campaign=campaign,
                        answer={"damage": label},
                        label=label,
                        client_id=uuid.uuid4(),
                        duration_ms=4000,
                    )
                )
                seq += 1
                record = {
                    "type": "answer",
                    "task": task_id,
                    "answer": {"damage": label},
                    "at": now.isoformat(),
                }
                entry = LedgerEntry(
                    campaign=campaign,
                    seq=seq,
                    prev_hash=prev,
                    entry_hash=ledger.entry_hash(prev, record),
                    record=record,
                )
                prev = entry.entry_hash
                entries.append(entry)
            if len(answers) >= 20000:
                Answer.objects.bulk_create(answers, batch_size=5000)
                LedgerEntry.objects.bulk_create(entries, batch_size=5000)
                answers, entries = [], []
        Answer.objects.bulk_create(answers, batch_size=5000)
        LedgerEntry.objects.bulk_create(entries, batch_size=5000)
        LedgerHead.objects.filter(pk=head.pk).update(seq=seq, head_hash=prev)


def child(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a manage.py command; returns (seconds, peak RSS in MB of that child, last stdout line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {done.stderr.strip()}")
    # ru_maxrss of children is the largest child so far; the export runs first, so it is its own.
    return seconds, max(peak_kb, before) / 1024, done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--answers-per-task", type=int, default=5)
    parser.add_argument("--volunteers", type=int, default=5_000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    options = parser.parse_args()
    var_dir = tempfile.mkdtemp(prefix="corroborate-export-bench-")
    env = {
        **os.environ,
        "CORROBORATE_VAR_DIR": var_dir,
        "DATABASE_URL": f"sqlite:///{var_dir}/bench.sqlite3",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("S3_BUCKET", None)
    os.environ.update(env)
    try:
        started = time.perf_counter()
        build(options.tasks, options.answers_per_task, options.volunteers)
        print(
            f"dataset: {options.tasks} tasks, {options.tasks * options.answers_per_task} answers, "
            f"{options.tasks} tile images, built in {time.perf_counter() - started:.1f} s"
        )
        out = Path(var_dir) / "package"
        seconds, rss_mb, summary = child(["export_evidence", "--campaign", "bench", "--out", str(out)], env)
        print(
            f"export_evidence: {seconds:.1f} s (target < {TARGET_SECONDS:.0f} s), peak RSS {rss_mb:.0f} MB "
            f"(target < {TARGET_RSS_MB:.0f} MB)"
        )
        print(f"summary: {summary[:300]}")
        verify_seconds, _, _ = child(["verify_package", str(out)], env)
        print(f"verify_package: {verify_seconds:.1f} s, package intact")
        ok = seconds < TARGET_SECONDS and rss_mb < TARGET_RSS_MB
        print("result: " + ("within targets" if ok else "OUTSIDE TARGETS"))
    finally:
        if options.keep:
            print(f"kept {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
