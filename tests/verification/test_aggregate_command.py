"""Tests for `manage.py aggregate` offline mode, run as researchers run it: a subprocess from the repo."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
from tests.conftest import CROWD  # noqa: E402


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "aggregate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


ANSWERS = (
    "task,worker,label,seconds\nt1,a,yes,3\nt1,b,yes,4\nt1,c,no,2\nt2,a,no,5\nt2,b,unsure,1\nt2,c,no,3\n"
)


def test_writes_consensus_and_prints_summary_last(tmp_path: Path) -> None:
    answers = write(tmp_path / "answers.csv", ANSWERS)
    out = tmp_path / "consensus.csv"
    done = run("--input", str(answers), "--output", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["tasks"] == 2 and summary["answers"] == 6 and summary["workers"] == 3
    assert summary["method"] == "auto" and summary["output"] == str(out)
    with out.open() as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["task", "label", "confidence", "n_answers", "agreement"]
        rows = {r["task"]: r for r in reader}
    assert rows["t1"]["label"] == "yes" and rows["t2"]["label"] == "no"
    assert rows["t2"]["n_answers"] == "3"
    assert 0.5 <= float(rows["t1"]["confidence"]) <= 1


def test_public_dataset_with_gold_and_method(tmp_path: Path) -> None:
    out = tmp_path / "rte.csv"
    done = run(
        "--input",
        str(CROWD / "rte" / "answers.csv"),
        "--output",
        str(out),
        "--method",
        "dawid_skene",
        "--gold",
        str(CROWD / "rte" / "truth.csv"),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["tasks"] == 800 and summary["gold_tasks"] == 800 and summary["method"] == "dawid_skene"
    truth = {r["task"]: r["label"] for r in csv.DictReader((CROWD / "rte" / "truth.csv").open())}
    rows = list(csv.DictReader(out.open()))
    assert all(r["label"] == truth[r["task"]] for r in rows)  # gold tasks carry the expert label


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, [], "not found"),
        ("", [], "empty"),
        ("task,worker\nt1,a\n", [], "lacks column"),
        ("task,worker,label\n", [], "no rows"),
        ("task,worker,label\nt1,a\n", [], "line 2"),
        ("task,worker,label\nt1,,yes\n", [], "line 2"),
        (b"task,worker,label\nt1,a,\xff\xfe\n", [], "not UTF-8"),
        (ANSWERS, ["--method", "telepathy"], "unknown method"),
        (ANSWERS, ["--gold", "/nonexistent/gold.csv"], "not found"),
    ],
)
def test_bad_input_fails_cleanly_and_writes_nothing(
    tmp_path: Path, content: str | bytes | None, extra: list[str], message: str
) -> None:
    answers = tmp_path / "answers.csv"
    if content is not None:
        write(answers, content)
    out = tmp_path / "consensus.csv"
    done = run("--input", str(answers), "--output", str(out), *extra)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == ([answers] if content is not None else [])


def test_missing_arguments_fail_cleanly(tmp_path: Path) -> None:
    done = run("--output", str(tmp_path / "x.csv"))
    assert done.returncode != 0 and done.stderr.strip().startswith("error: ")
