"""Volunteer load: N simulated volunteers doing next-task/answer cycles against the production shape.

Starts gunicorn on this machine with production settings over plain HTTP (SECURE_SSL_REDIRECT=0,
SECURE_COOKIES=0, rate limits off), PostgreSQL in a fresh database it creates and drops, and Redis as the
cache when REDIS_URL is set. A campaign of 20,000 tasks (3 to 5 answers each) is written with bulk_create.
Each volunteer is an httpx.AsyncClient with its own cookie jar: POST next-task, then POST its answer, again
and again for a fixed time. Prints cycles/s and request latency percentiles next to the target, then checks
the database: no duplicate volunteer/task answer, no task over its maximum, every 201 stored.

Run: .venv/bin/python benchmarks/volunteer_load.py [--volunteers 200] [--seconds 30] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_CYCLES_PER_S = 300.0
TARGET_P99_MS = 200.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(database_url: str, var_dir: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CORROBORATE_PRODUCTION": "1",
        "SECURE_SSL_REDIRECT": "0",
        "SECURE_COOKIES": "0",
        "SECURE_HSTS_SECONDS": "0",
        "SECRET_KEY": "volunteer-load-benchmark-" + uuid.uuid4().hex,
        "CORROBORATE_RATE_LIMITS": "0",
        "CORROBORATE_VAR_DIR": var_dir,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CONN_MAX_AGE": os.environ.get("CONN_MAX_AGE", "600"),
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    return env


def admin_sql(admin_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql)


def populate(n_tasks: int) -> str:
    """Create the campaign and its tasks in the benchmark database; returns the campaign slug."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from tasks import services
    from tasks.models import Campaign, Source, Task

    campaign = services.campaign_create(
        slug="load",
        title="Load test",
        kind=Campaign.Kind.IMAGERY,
        min_answers=3,
        max_answers=5,
        gold_share=0.1,
    )
    source = Source.objects.create(
        campaign=campaign,
        kind=Source.Kind.RASTER,
        file="sources/load/before.tif",
        original_name="before.tif",
        sha256="0" * 64,
        size_bytes=1,
        ready=True,
        role="before",
    )
    after = Source.objects.create(
        campaign=campaign,
        kind=Source.Kind.RASTER,
        file="sources/load/after.tif",
        original_name="after.tif",
        sha256="1" * 64,
        size_bytes=1,
        ready=True,
        role="after",
    )
    side = int(n_tasks**0.5) + 1
    tasks = []
    for i in range(n_tasks):
        row, col = divmod(i, side)
        gold = i % 200 == 0
        tasks.append(
            Task(
                campaign=campaign,
                source=source,
                after_source=after,
                key=f"tile:{row}:{col}",
                kind=Task.Kind.TILE,
                grid_row=row,
                grid_col=col,
                window={"col_off": col * 256, "row_off": row * 256, "width": 256, "height": 256},
                bbox=[23 + col * 0.01, 13 + row * 0.01, 23.01 + col * 0.01, 13.01 + row * 0.01],
                media={
                    "before": f"tiles/load/{row}_{col}_before.jpg",
                    "after": f"tiles/load/{row}_{col}_after.jpg",
                },
                is_gold=gold,
                gold_answer={"damage": "intact"} if gold else None,
            )
        )
    Task.objects.bulk_create(tasks, batch_size=2000)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return campaign.slug


def start_server(env: dict[str, str], port: int, workers: int, worker_class: str, threads: int) -> Any:
    command = [
        str(REPO / ".venv" / "bin" / "gunicorn"),
        "config.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--backlog",
        "2048",
        "--log-level",
        "warning",
        # No access log: it would carry client addresses. Production uses a format without %(h)s.
    ]
    if worker_class == "gthread":
        command += ["--threads", str(threads)]
    process = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("error: gunicorn did not start")


_SSL_CONTEXT: Any = None


async def volunteer(
    base: str, slug: str, stop_at: float, latencies: dict[str, list[float]], acked: list[tuple[int, str]]
) -> dict[str, int]:
    import ssl

    import httpx

    global _SSL_CONTEXT
    # One TLS context for every client (unused over HTTP, but httpx builds one per client: ~40 ms each).
    _SSL_CONTEXT = _SSL_CONTEXT or ssl.create_default_context()

    counts = {"cycles": 0, "errors": 0, "empty": 0}
    choices = ["no_structures", "intact", "destroyed", "unsure"]
    rng = random.Random()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30, verify=_SSL_CONTEXT) as client:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            csrf = client.cookies.get("csrftoken") or ""
            response = await client.post(
                f"/api/v1/campaigns/{slug}/next-task",
                headers={"X-CSRFToken": csrf, "Accept": "application/json"},
            )
            latencies["next"].append(time.perf_counter() - started)
            if response.status_code == 204:
                counts["empty"] += 1
                await asyncio.sleep(0.5)
                continue
            if response.status_code != 200:
                counts["errors"] += 1
                continue
            task_id = response.json()["task"]["id"]
            client_id = str(uuid.uuid4())
            started = time.perf_counter()
            response = await client.post(
                f"/api/v1/tasks/{task_id}/answers",
                json={"answer": {"damage": rng.choice(choices)}, "client_id": client_id, "duration_ms": 4000},
                headers={"X-CSRFToken": client.cookies.get("csrftoken") or "", "Accept": "application/json"},
            )
            latencies["answer"].append(time.perf_counter() - started)
            if response.status_code == 201:
                acked.append((task_id, client_id))
                counts["cycles"] += 1
            else:
                counts["errors"] += 1
    return counts


async def run_load(base: str, slug: str, volunteers: int, seconds: float) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {"next": [], "answer": []}
    acked: list[tuple[int, str]] = []
    started = time.perf_counter()
    stop_at = started + seconds
    results = await asyncio.gather(
        *(volunteer(base, slug, stop_at, latencies, acked) for _ in range(volunteers))
    )
    elapsed = time.perf_counter() - started
    totals = {k: sum(r[k] for r in results) for k in ("cycles", "errors", "empty")}
    return {"elapsed": elapsed, "latencies": latencies, "acked": acked, **totals}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def check_database(acked: list[tuple[int, str]]) -> list[str]:
    from django.db.models import Count, F

    from tasks.models import Task
    from verification.models import Answer

    problems = []
    duplicates = (
        Answer.objects.values("task_id", "volunteer_id").annotate(n=Count("id")).filter(n__gt=1).count()
    )
    if duplicates:
        problems.append(f"{duplicates} duplicate volunteer/task answers")
    over = Task.objects.filter(is_gold=False, answer_count__gt=F("campaign__max_answers")).count()
    stored_over = (
        Answer.objects.filter(task__is_gold=False)
        .values("task_id")
        .annotate(n=Count("id"))
        .filter(n__gt=5)
        .count()
    )
    if over or stored_over:
        problems.append(f"{max(over, stored_over)} tasks over their maximum answers")
    stored = set(Answer.objects.values_list("task_id", "client_id"))
    missing = [a for a in acked if (a[0], uuid.UUID(a[1])) not in stored]
    if missing:
        problems.append(f"{len(missing)} acknowledged answers missing")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volunteers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--tasks", type=int, default=20_000)
    # gthread keeps connections alive (sync workers close each one): about twice the cycles/s measured here.
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    parser.add_argument("--worker-class", default="gthread", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--database", default="corroborate_load")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    import tempfile

    database_url = args.admin_url.rsplit("/", 1)[0] + "/" + args.database
    var_dir = tempfile.mkdtemp(prefix="corroborate-load-")
    admin_sql(args.admin_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    admin_sql(args.admin_url, f'CREATE DATABASE "{args.database}"')
    server = None
    try:
        env = server_env(database_url, var_dir)
        os.environ.update({k: v for k, v in env.items() if k not in os.environ or k in env})
        sys.path.insert(0, str(REPO))
        t0 = time.perf_counter()
        slug = populate(args.tasks)
        print(f"setup: {args.tasks} tasks in {time.perf_counter() - t0:.1f} s", flush=True)
        port = free_port()
        server = start_server(env, port, args.workers, args.worker_class, args.threads)
        base = f"http://127.0.0.1:{port}"
        # A short warm-up so that every worker has imported its code and opened its connection.
        asyncio.run(run_load(base, slug, min(args.volunteers, 20), 2.0))
        result = asyncio.run(run_load(base, slug, args.volunteers, args.seconds))
        every = result["latencies"]["next"] + result["latencies"]["answer"]
        rate = result["cycles"] / result["elapsed"]
        p99 = percentile(every, 0.99)
        shape = f"{args.workers} {args.worker_class} workers" + (
            f" x {args.threads} threads" if args.worker_class == "gthread" else ""
        )
        print(
            f"volunteers {args.volunteers}, {result['elapsed']:.1f} s, {shape}, {os.cpu_count()} cores, "
            f"PostgreSQL, cache {'Redis' if os.environ.get('REDIS_URL') else 'local memory'}"
        )
        print(
            f"cycles/s {rate:.0f} (target >= {TARGET_CYCLES_PER_S:.0f}: {'met' if rate >= TARGET_CYCLES_PER_S else 'NOT met'}); "
            f"{result['cycles']} cycles, {result['errors']} errors, {result['empty']} empty"
        )
        print(
            f"latency ms, all requests: p50 {percentile(every, 0.5):.0f} p95 {percentile(every, 0.95):.0f} "
            f"p99 {p99:.0f} (target p99 < {TARGET_P99_MS:.0f}: {'met' if p99 < TARGET_P99_MS else 'NOT met'})"
        )
        for name in ("next", "answer"):
            values = result["latencies"][name]
            print(
                f"latency ms, {name:6}: p50 {percentile(values, 0.5):.0f} p95 {percentile(values, 0.95):.0f} "
                f"p99 {percentile(values, 0.99):.0f} mean {statistics.fmean(values) * 1000 if values else 0:.0f}"
            )
        problems = check_database(result["acked"])
        print(
            "database checks: "
            + (
                "ok (no duplicates, no task over max, every 201 stored)"
                if not problems
                else "; ".join(problems)
            )
        )
        if problems:
            sys.exit(1)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        if not args.keep:
            admin_sql(args.admin_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
