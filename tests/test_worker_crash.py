"""A django-q worker killed with SIGKILL in the middle of an ingest job; the job re-run gives every task once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

SETUP = """
import json
from django.core.management import call_command
from django.db import transaction
from fixtures.synthetic_imagery import make_scene_pair
from tasks import imagery, services
from tasks.models import Campaign
from tasks.storage import put_file
call_command("migrate", verbosity=0)
before, after = "{var}/before.tif", "{var}/after.tif"
make_scene_pair(before, after, size_px=3072, villages=10)
plan = imagery.plan_grid(before, after)
campaign = services.campaign_create(slug="crash", title="Crash", kind=Campaign.Kind.IMAGERY)
params = {{"before": put_file("uploads/before.tif", before), "after": put_file("uploads/after.tif", after),
          "before_name": "before.tif", "after_name": "after.tif"}}
with transaction.atomic():
    job = services.job_create(kind="ingest_imagery", params=params, campaign=campaign)
print(json.dumps({{"job": job.pk, "tiles": len(plan.tiles)}}))
"""

RERUN = """
import json
from tasks.jobs import job_run
from tasks.models import Job, Source, Task
from verification import ledger
from verification.models import LedgerEntry
result = job_run({job})
lines = [e.as_line() for e in LedgerEntry.objects.order_by("seq")]
print(json.dumps({{"tasks": Task.objects.count(), "keys": Task.objects.values("key").distinct().count(),
    "sources": Source.objects.count(), "status": Job.objects.get(pk={job}).status,
    "ledger_ok": ledger.verify_entries(lines) is None}}))
"""


def _manage(var: Path, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=_env(var),
        capture_output=True,
        text=True,
        **kwargs,
    )


def _env(var: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env["CORROBORATE_VAR_DIR"] = str(var)
    return env


def test_killed_worker_then_rerun_gives_no_duplicate_and_no_missing_task(tmp_path: Path) -> None:
    setup = _manage(tmp_path, "shell", "-c", SETUP.format(var=tmp_path), timeout=300)
    assert setup.returncode == 0, setup.stderr[-2000:]
    info = json.loads(setup.stdout.strip().splitlines()[-1])
    database = tmp_path / "corroborate.sqlite3"
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=REPO,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    created = 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                with sqlite3.connect(database, timeout=1) as db:
                    created = db.execute("select count(*) from tasks_task").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if created > 0:
                break
    finally:
        os.killpg(cluster.pid, signal.SIGKILL)
        cluster.wait(timeout=30)
    assert 0 < created < info["tiles"], f"the worker must die mid-ingest (saw {created} of {info['tiles']})"
    with sqlite3.connect(database) as db:
        status = db.execute("select status from tasks_job where id = ?", (info["job"],)).fetchone()[0]
    assert status != "done"
    rerun = _manage(tmp_path, "shell", "-c", RERUN.format(job=info["job"]), timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert after == {
        "tasks": info["tiles"],
        "keys": info["tiles"],
        "sources": 2,
        "status": "done",
        "ledger_ok": True,
    }
