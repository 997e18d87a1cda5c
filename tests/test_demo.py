"""`manage.py demo --no-serve` on embedded defaults (SQLite, ORM broker, files under a var folder)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _run_demo(var_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env["CORROBORATE_VAR_DIR"] = str(var_dir)
    return subprocess.run(
        [sys.executable, "manage.py", "demo", "--no-serve"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )


def test_demo_sets_up_both_campaigns_through_the_job_queue_and_can_be_rerun(tmp_path: Path) -> None:
    first = _run_demo(tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    # What a newcomer to the project reads: how to sign in, not a log line per simulated answer.
    assert "answer recorded" not in first.stderr
    assert "researcher password corroborate-researcher" in " ".join(first.stderr.split())
    assert summary["campaigns"] == ["demo-imagery", "demo-video"]
    assert summary["tasks"]["demo-imagery"] >= 30
    assert summary["tasks"]["demo-video"] >= 3
    roles = {a["role"] for a in summary["accounts"]}
    assert "researcher" in roles
    database = sqlite3.connect(tmp_path / "corroborate.sqlite3")
    done = database.execute("select count(*) from tasks_job where status = 'done'").fetchone()[0]
    assert done == 2, "both ingests ran as django-q jobs"
    gold = database.execute("select count(*) from tasks_task where is_gold").fetchone()[0]
    assert gold >= 3
    # A small simulated crowd has answered half of the tiles, so researchers see consensus at once.
    retired = database.execute("select count(*) from tasks_task where status = 'retired'").fetchone()[0]
    still_open = database.execute(
        "select count(*) from tasks_task where status = 'open' and not is_gold"
    ).fetchone()[0]
    assert retired >= 10 and still_open >= 15
    # Two tiles split evenly up to the maximum wait for a reviewer, saying why.
    review = database.execute(
        "select c.reason from tasks_task t join verification_consensus c on c.task_id = t.id "
        "where t.status = 'needs_review'"
    ).fetchall()
    assert len(review) == 2 and all("split with a lead of 0 vote(s)" in r for (r,) in review)
    # The crowd answered the gold tasks too (the volunteers' 'gold right' column), and the settled tiles
    # are an evidence set ready to export.
    gold_answers = database.execute(
        "select count(*) from verification_answer a join tasks_task t on t.id = a.task_id where t.is_gold"
    ).fetchone()[0]
    assert gold_answers == 10 * gold
    evidence = database.execute(
        "select s.name, count(i.id) from verification_evidenceset s "
        "join verification_evidenceitem i on i.evidence_set_id = s.id group by s.id"
    ).fetchall()
    assert evidence == [("Settled tiles (demo)", retired)]
    owner = database.execute(
        "select count(*) from tasks_campaignmembership m join auth_user u on u.id = m.user_id "
        "where u.username = 'researcher' and m.role = 'owner'"
    ).fetchone()[0]
    assert owner == 2
    second = _run_demo(tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads(second.stdout.strip().splitlines()[-1])["tasks"] == summary["tasks"]
