"""PostgreSQL restarted during a burst of answers: clients get retryable errors and no acknowledged answer is lost.

The test runs its own PostgreSQL instance (initdb in a temporary folder) behind gunicorn, so restarting it
disturbs nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, skip_or_fail

pytestmark = pytest.mark.slow

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(*args: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@pytest.fixture
def private_postgres() -> Iterator[tuple[str, Path, int]]:
    if (
        PG_BIN is None
        or not (PG_BIN / "initdb").exists()
        or (os.geteuid() == 0 and not shutil.which("runuser"))
    ):
        skip_or_fail("needs PostgreSQL server binaries (initdb, pg_ctl)")
    assert PG_BIN is not None
    # Not under pytest's private temporary folder: the postgres user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="corroborate-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    data = root / "data"
    port = _free_port()
    subprocess.run(
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {data.parent} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(data.parent / "log")]
    subprocess.run(_as_postgres(*pg_ctl, "start"), check=True, capture_output=True)
    try:
        yield f"postgres://postgres@127.0.0.1:{port}/postgres", data, port
    finally:
        subprocess.run(_as_postgres(*pg_ctl, "-m", "immediate", "stop"), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _env(database_url: str, var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(
        DATABASE_URL=database_url,
        CORROBORATE_VAR_DIR=str(var),
        CORROBORATE_RATE_LIMITS="0",
        CONN_MAX_AGE="60",
    )
    return env


SEED = """
from django.core.management import call_command
from tasks.models import Campaign, Source, Task
from tests.factories import CampaignFactory, TaskFactory
call_command("migrate", verbosity=0)
campaign = CampaignFactory(slug="burst", min_answers=3, max_answers=5)
for _ in range(150):
    TaskFactory(campaign=campaign)
print(Task.objects.count())
"""


def test_answers_survive_a_database_restart(private_postgres: tuple[str, Path, int], tmp_path: Path) -> None:
    import httpx
    import psycopg

    database_url, data, _ = private_postgres
    env = _env(database_url, tmp_path)
    seed = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SEED],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert seed.returncode == 0, seed.stderr[-2000:]
    port = _free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-w",
            "2",
            "-k",
            "gthread",
            "--threads",
            "4",
            "-b",
            f"127.0.0.1:{port}",
            "--access-logfile",
            "-",
            "--access-logformat",
            "%(r)s %(s)s",
            "config.wsgi",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    statuses: dict[int, int] = {}
    transport_errors = 0
    lock = threading.Lock()
    stop = threading.Event()

    def note(status: int) -> None:
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    def volunteer() -> None:
        nonlocal transport_errors
        with httpx.Client(base_url=base, timeout=5) as client:
            while not stop.is_set():
                try:
                    lease = client.post(
                        "/api/v1/campaigns/burst/next-task",
                        headers={"X-CSRFToken": client.cookies.get("csrftoken", "")},
                    )
                except httpx.TransportError:
                    with lock:
                        transport_errors += 1
                    time.sleep(0.1)
                    continue
                note(lease.status_code)
                if lease.status_code == 204:
                    return
                if lease.status_code != 200:
                    time.sleep(0.1)
                    continue
                task_id = lease.json()["task"]["id"]
                client_id = str(uuid.uuid4())
                body = {"answer": {"damage": "intact"}, "client_id": client_id}
                for _ in range(50):  # retry the same answer (same client_id) until it is acknowledged
                    try:
                        response = client.post(
                            f"/api/v1/tasks/{task_id}/answers",
                            json=body,
                            headers={"X-CSRFToken": client.cookies.get("csrftoken", "")},
                        )
                    except httpx.TransportError:
                        with lock:
                            transport_errors += 1
                        time.sleep(0.1)
                        continue
                    note(response.status_code)
                    if response.status_code in (200, 201):
                        with lock:
                            acknowledged.append(client_id)
                        break
                    if response.status_code == 409:
                        break
                    time.sleep(0.1)

    try:
        for _ in range(100):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        threads = [threading.Thread(target=volunteer) for _ in range(12)]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        assert PG_BIN is not None
        options = f"-p {_port(database_url)} -k {data.parent} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-w",
                "-m",
                "fast",
                "-l",
                str(data.parent / "log"),
                "restart",
            ),
            check=True,
            capture_output=True,
        )
        time.sleep(3.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=30)
    assert len(acknowledged) >= 50, f"the burst must have answered tasks: {statuses}"
    assert statuses.get(403, 0) == 0, statuses
    assert statuses.get(500, 0) == 0, f"no server error with a traceback: {statuses}"
    retryable = statuses.get(503, 0) + transport_errors
    assert retryable > 0, f"the restart must have been felt by clients: {statuses}"
    with psycopg.connect(database_url) as connection:
        stored = {str(row[0]) for row in connection.execute("select client_id from verification_answer")}
    lost = [c for c in acknowledged if c not in stored]
    assert lost == [], f"{len(lost)} acknowledged answers were lost"
    print(
        json.dumps(
            {"acknowledged": len(acknowledged), "statuses": statuses, "transport_errors": transport_errors}
        )
    )


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])
