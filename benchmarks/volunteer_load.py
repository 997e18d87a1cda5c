"""Volunteer load: N simulated volunteers doing next-task/answer cycles against the production shape.

Starts gunicorn on this machine with production settings over plain HTTP (SECURE_SSL_REDIRECT=0,
SECURE_COOKIES=0, rate limits off unless --rate-limits: simulated volunteers outpace people), PostgreSQL in a fresh database it creates and drops, and Redis as the
cache when REDIS_URL is set. A campaign of 40,000 tasks (3 to 5 answers each) is written with bulk_create.
Each volunteer is one keep-alive HTTP/1.1 connection with its own cookie jar, all on one event loop (a
minimal client: the generator shares the cores with the server): POST next-task, then POST its answer, again
and again for a fixed time. Two runs:

- paced (the target check): each volunteer starts a cycle every N/R seconds (N volunteers, R the target of
  300 cycles/s) and answers 0.8 of the way through it, holding the task's lease while "looking", as people
  do; the offered load is the target rate and about N leases are open at any time. A volunteer who falls
  behind starts the next cycle at once, without catching up.
- saturation: every volunteer starts the next cycle as soon as the last one returns (no pause at all), the
  most the server can take. By Little's law a closed loop of N volunteers with no pause has a mean request
  latency of N / (2 x cycles/s): 333 ms at 300 cycles/s and N = 200, so its latency says how deep the queue
  is, not how fast a request is; the latency target is checked on the paced run.

Each run is made twice: with two requests per task (next-task, then the answer: the cycle the issue
describes) and with one (the answer asks for the next task with "next": true, as the classify page does,
and next-task is called only when none came back).

A sweep then offers lower rates (100 to 250 cycles/s by default) and prints the highest that this machine
serves with p99 under the target: the rate it sustains within the latency target.

Prints cycles/s and request latency percentiles next to the target, the CPU taken by the generator,
gunicorn and PostgreSQL, then checks the database: no duplicate volunteer/task answer, no task over its
maximum, every 201 stored. Then it measures the ceiling: the same gunicorn serving a view that does no work
(full middleware, session, CSRF and DRF, no SQL) under the same saturating load, the most this machine can
do at that moment.

Run: REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python benchmarks/volunteer_load.py [--volunteers 200]
     [--seconds 30] [--rate 300] [--workers N] [--threads N] [--ceiling-seconds 10]
     [--requests-per-task two|one|both] [--sweep 100,150,200,250]
Workers and threads default to config/gunicorn.py (GUNICORN_WORKERS, GUNICORN_THREADS).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_CYCLES_PER_S = 300.0
TARGET_P99_MS = 200.0
LOOKING = 0.8  # paced runs: share of each cycle a volunteer spends looking at the task before answering
# Every run starts with all its volunteers arriving at once, new to the site (a session, a volunteer row,
# a first lease each, within one cycle interval). Latency is also reported for the requests started after
# this many seconds, once that flash crowd has been served: the steady state the target is about.
ARRIVAL_SECONDS = 5.0


# --rate-limits: the production defaults (config/settings.py) times 100, so every request pays for its
# limits as in production and none is refused.
RATE_LIMITED_BUT_NEVER_REFUSED = {
    "CORROBORATE_RATE_LIMITS": "1",
    "RATE_ANSWERS_BURST": "1000/10s",
    "RATE_ANSWERS": "6000/min",
    "RATE_NEXT_TASK_BURST": "2000/10s",
    "RATE_NEXT_TASK": "12000/min",
    "RATE_NEWCOMERS": "60000/min",
}


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
    source, after = (
        Source.objects.create(
            campaign=campaign,
            kind=Source.Kind.RASTER,
            file=f"sources/load/{role}.tif",
            original_name=f"{role}.tif",
            sha256=digit * 64,
            size_bytes=1,
            ready=True,
            role=role,
        )
        for role, digit in (("before", "0"), ("after", "1"))
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


def scratch_arguments(parser: argparse.ArgumentParser, *, database: str, tasks: int) -> None:
    """The options of a benchmark that works in a scratch database of its own (see `scratch_campaign`)."""
    parser.add_argument("--tasks", type=int, default=tasks)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--database", default=database)


@contextlib.contextmanager
def scratch_campaign(args: argparse.Namespace) -> Iterator[Any]:
    """A fresh PostgreSQL database `args.database` holding the load campaign of `args.tasks` tasks
    (`populate`), with Django set up on it; yields the campaign, set to serve each task once (minimum one
    answer) and no gold, and drops the database afterwards."""
    admin_sql(args.admin_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    admin_sql(args.admin_url, f'CREATE DATABASE "{args.database}"')
    var_dir = Path("/tmp") / f"{args.database}-var"
    os.environ.update(server_env(args.admin_url.rsplit("/", 1)[0] + "/" + args.database, str(var_dir)))
    try:
        slug = populate(args.tasks)  # sets Django up
        from tasks.models import Campaign

        Campaign.objects.filter(slug=slug).update(min_answers=1, gold_share=0)
        yield Campaign.objects.get(slug=slug)
    finally:
        from django.db import connections

        connections.close_all()
        admin_sql(args.admin_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


def start_server(
    env: dict[str, str], port: int, workers: int, worker_class: str, threads: int, app: str = "config.wsgi"
) -> Any:
    command = [
        str(REPO / ".venv" / "bin" / "gunicorn"),
        app,
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


class Http11:
    """A minimal HTTP/1.1 keep-alive client over one asyncio connection, with its own cookie jar.

    httpx spends about a millisecond of CPU per request in Python; on a 2-core machine that shares the
    cores with gunicorn and PostgreSQL that is most of a core at these rates. This client sends a request
    and parses just the status, Content-Length and Set-Cookie of the answer.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cookies: dict[str, str] = {}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes = b"") -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: application/json\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"X-CSRFToken: {self.cookies.get('csrftoken', '')}\r\n"
                + (f"Cookie: {cookie}\r\n" if cookie else "")
                + "\r\n"
            )
            try:
                self.writer.write(head.encode("latin-1") + body)
                raw = await self.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                # The server closed an idle keep-alive connection: reconnect once.
                self.close()
                if attempt == 2:
                    raise
                continue
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                lname = name.lower()
                if lname == "content-length":
                    length = int(value)
                elif lname == "set-cookie":
                    pair = value.strip().split(";", 1)[0]
                    key, _, val = pair.partition("=")
                    self.cookies[key] = val.strip('"')
                elif lname == "connection" and value.strip().lower() == "close":
                    close = True
            payload = await self.reader.readexactly(length) if length else b""
            if close:
                self.close()
            return status, payload
        raise ConnectionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def volunteer(
    host: str,
    port: int,
    slug: str,
    stop_at: float,
    latencies: dict[str, list[float]],
    acked: list[tuple[int, str]],
    ceiling: bool,
    interval: float | None = None,
    one_request: bool = False,
    steady_from: float = 0.0,
) -> dict[str, int]:
    counts = {"cycles": 0, "errors": 0, "empty": 0}
    choices = ["no_structures", "intact", "destroyed", "unsure"]
    rng = random.Random()
    client = Http11(host, port)
    perf = time.perf_counter
    # Paced: a random phase, so that the volunteers' cycles are spread over the interval.
    next_start = perf() + (rng.uniform(0, interval) if interval else 0.0)
    held: int | None = None  # one request per task: the task leased with the last answer
    ask_next = ', "next": true' if one_request else ""

    def record(name: str, started: float) -> None:
        took = perf() - started
        latencies[name].append(took)
        if started >= steady_from:
            latencies[f"steady {name}"].append(took)

    try:
        while perf() < stop_at:
            if interval:
                now = perf()
                if next_start > now:
                    await asyncio.sleep(next_start - now)
                    if perf() >= stop_at:
                        break
                cycle_start = next_start = max(next_start, perf())
                next_start += interval
            if ceiling:
                # The same two requests' framework cost with no work: session, CSRF, DRF, JSON, no SQL.
                for name in ("next", "answer"):
                    started = perf()
                    status, _ = await client.post("/__ceiling", b'{"answer": {"damage": "intact"}}')
                    record(name, started)
                counts["cycles" if status == 200 else "errors"] += 1
                continue
            if held is None:
                started = perf()
                status, body = await client.post(f"/api/v1/campaigns/{slug}/next-task")
                record("next", started)
                if status == 204:
                    counts["empty"] += 1
                    await asyncio.sleep(0.5)
                    continue
                if status != 200:
                    counts["errors"] += 1
                    continue
                task_id = json.loads(body)["task"]["id"]
            else:
                task_id, held = held, None
            if interval:
                # Looking at the task, holding its lease, for most of the cycle, as a person does.
                look_until = cycle_start + LOOKING * interval
                if look_until > perf():
                    await asyncio.sleep(look_until - perf())
            client_id = str(uuid.uuid4())
            payload = (
                f'{{"answer": {{"damage": "{rng.choice(choices)}"}}, "client_id": "{client_id}", '
                f'"duration_ms": 4000{ask_next}}}'
            )
            started = perf()
            status, body = await client.post(f"/api/v1/tasks/{task_id}/answers", payload.encode())
            record("answer", started)
            if status == 201:
                acked.append((task_id, client_id))
                counts["cycles"] += 1
                if one_request:
                    following = json.loads(body)["next"]
                    held = following and following["task"]["id"]
            else:
                counts["errors"] += 1
    finally:
        client.close()
    return counts


async def run_load(
    base: tuple[str, int],
    slug: str,
    volunteers: int,
    seconds: float,
    ceiling: bool = False,
    rate: float | None = None,
    one_request: bool = False,
) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {
        name: [] for name in ("next", "answer", "steady next", "steady answer")
    }
    acked: list[tuple[int, str]] = []
    started = time.perf_counter()
    stop_at = started + seconds
    interval = volunteers / rate if rate else None
    steady_from = started + ARRIVAL_SECONDS
    results = await asyncio.gather(
        *(
            volunteer(*base, slug, stop_at, latencies, acked, ceiling, interval, one_request, steady_from)
            for _ in range(volunteers)
        )
    )
    elapsed = time.perf_counter() - started
    totals = {k: sum(r[k] for r in results) for k in ("cycles", "errors", "empty")}
    return {"elapsed": elapsed, "latencies": latencies, "acked": acked, **totals}


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each of these processes and its reaped children, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = sum(int(f) for f in fields[11:15]) / ticks  # utime, stime, cutime, cstime
    return seconds


def machine_busy_seconds() -> tuple[float, float, float]:
    """(busy, total, kernel) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / ticks, sum(values) / ticks, (values[2] + values[5] + values[6]) / ticks


def processes_where(test: Callable[[int], bool]) -> list[int]:
    """Ids of the running processes for which `test(pid)` holds (processes that vanish are left out)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if test(int(entry.name)):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def processes_named(name: str) -> list[int]:
    return processes_where(lambda pid: Path(f"/proc/{pid}/comm").read_text().strip() == name)


def process_group(pgid: int) -> list[int]:
    return processes_where(lambda pid: os.getpgid(pid) == pgid)


def postgres_backends(database: str) -> list[int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database]
        )
        return [row[0] for row in cursor.fetchall()]


def vacuum(args: argparse.Namespace) -> None:
    """VACUUM ANALYZE the benchmark database before a run, as autovacuum would have in production.

    This machine's PostgreSQL runs with autovacuum off: without this, each run would inherit the dead row
    versions of the runs before it (every answer updates its task and assignment rows), and the later
    runs would measure the pile-up rather than the code.
    """
    import psycopg

    url = args.admin_url.rsplit("/", 1)[0] + "/" + args.database
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def autovacuum_setting(args: argparse.Namespace) -> str:
    import psycopg

    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    return str(row[0]) if row else "unknown"


def measured(
    base: tuple[str, int],
    slug: str,
    args: argparse.Namespace,
    server_pgid: int,
    ceiling: bool,
    rate: float | None = None,
    one_request: bool = False,
) -> dict[str, Any]:
    """One timed run with the CPU taken by the generator, gunicorn, PostgreSQL and the whole machine."""
    if not ceiling:
        vacuum(args)

    def groups() -> dict[str, list[int]]:
        # Listed again at the end: PostgreSQL backends opened during the run (a gunicorn thread's first
        # connection) count with all their CPU, instead of being missed as they were when only the
        # processes present at the start were read.
        backends = [] if ceiling else postgres_backends(args.database)
        return {
            "gunicorn": process_group(server_pgid),
            "postgres": backends,
            "postgres_other": [p for p in processes_named("postgres") if p not in backends],
            "redis": processes_named("redis-server"),
        }

    def sample() -> tuple[float, dict[str, dict[int, float]], tuple[float, float, float]]:
        return (
            time.process_time(),
            {name: cpu_seconds(pids) for name, pids in groups().items()},
            machine_busy_seconds(),
        )

    before = sample()
    result = asyncio.run(run_load(base, slug, args.volunteers, args.seconds, ceiling, rate, one_request))
    after = sample()
    wall = result["elapsed"]
    result["cpu"] = {"generator": (after[0] - before[0]) / wall}
    for name, now in after[1].items():
        then = before[1][name]
        result["cpu"][name] = sum(seconds - then.get(pid, 0.0) for pid, seconds in now.items()) / wall
    result["cpu"].update(
        machine=(after[2][0] - before[2][0]) / wall,
        cores=(after[2][1] - before[2][1]) / wall,
        kernel=(after[2][2] - before[2][2]) / wall,
    )
    return result


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
    # The campaign's ledger, chained after each commit under all that concurrency: intact, one entry an answer.
    from tasks.models import Campaign
    from verification.models import LedgerEntry, LedgerPending
    from verification.services import ledger_verify

    # Records no chainer took yet (each process chains at most every LEDGER_CHAIN_INTERVAL seconds, and
    # passes when another holds the head) wait for the next chainer, a read (as below) or the job.
    print(
        f"[database checks] ledger records still waiting after the last run: {LedgerPending.objects.count()}"
    )
    for campaign in Campaign.objects.all():
        problem = ledger_verify(campaign=campaign)
        if problem is not None:
            problems.append(f"ledger of {campaign.slug}: {problem}")
        answers = Answer.objects.filter(campaign=campaign).count()
        recorded = LedgerEntry.objects.filter(campaign=campaign, record__type="answer").count()
        if recorded != answers:
            problems.append(f"ledger of {campaign.slug}: {recorded} answer entries for {answers} answers")
    return problems


def ceiling_application(environ: dict[str, Any], start_response: Any) -> Any:
    """WSGI entry for the ceiling run: the whole site plus /__ceiling, a view that does no work.

    gunicorn loads it as benchmarks.volunteer_load:ceiling_application, with the same settings,
    middleware, sessions (Redis), CSRF and DRF as the real run; only the view is empty.
    """
    global _ceiling_wsgi
    if _ceiling_wsgi is None:
        from django.conf import settings
        from django.core.wsgi import get_wsgi_application

        _ceiling_wsgi = get_wsgi_application()
        settings.ROOT_URLCONF = "benchmarks.volunteer_load"
    return _ceiling_wsgi(environ, start_response)


_ceiling_wsgi: Any = None


def __getattr__(name: str) -> Any:
    # Module-level urlpatterns for the ceiling run, built only when Django asks (it needs settings).
    if name != "urlpatterns":
        raise AttributeError(name)
    from django.middleware.csrf import get_token
    from django.urls import include, path
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    class CeilingView(APIView):
        def post(self, request: Request) -> Response:
            if not request.session.get("volunteer"):
                request.session["volunteer"] = str(uuid.uuid4())
            get_token(request._request)
            return Response({"task": {"id": 1}, "echo": request.data})

    return [path("__ceiling", CeilingView.as_view()), path("", include("config.urls"))]


def report(
    label: str, args: argparse.Namespace, result: dict[str, Any], shape: str, offered: float | None = None
) -> tuple[float, float, float]:
    every = result["latencies"]["next"] + result["latencies"]["answer"]
    rate = result["cycles"] / result["elapsed"]
    p99 = percentile(every, 0.99)
    cpu = result["cpu"]
    print(
        f"[{label}] volunteers {args.volunteers}, {result['elapsed']:.1f} s, {shape}, {os.cpu_count()} cores, "
        f"PostgreSQL, cache {'Redis' if os.environ.get('REDIS_URL') else 'local memory'}, "
        f"rate limits {'counted (budgets x100)' if args.rate_limits else 'off'}"
        + (f", offered {offered:.0f} cycles/s" if offered else ", no pause between cycles")
    )
    # Paced runs cannot exceed the offered rate; 2% slack for the phase of the first and last cycles.
    rate_met = rate >= TARGET_CYCLES_PER_S * (0.98 if offered else 1.0)
    print(
        f"[{label}] cycles/s {rate:.0f} (target >= {TARGET_CYCLES_PER_S:.0f}: "
        f"{'met' if rate_met else 'NOT met'}); requests/s {len(every) / result['elapsed']:.0f}; "
        f"{result['cycles']} cycles, {result['errors']} errors, {result['empty']} empty"
    )
    p99_note = f"target p99 < {TARGET_P99_MS:.0f}: {'met' if p99 < TARGET_P99_MS else 'NOT met'}"
    if not offered:
        per_cycle = len(every) / result["cycles"] if result["cycles"] else 2
        little = 1000 * args.volunteers / (per_cycle * rate) if rate else float("nan")
        p99_note = f"queueing: Little's law mean {little:.0f} ms at this rate"
    print(
        f"[{label}] latency ms, all requests: p50 {percentile(every, 0.5):.0f} p95 {percentile(every, 0.95):.0f} "
        f"p99 {p99:.0f} ({p99_note})"
    )
    steady = result["latencies"]["steady next"] + result["latencies"]["steady answer"]
    steady_p99 = percentile(steady, 0.99)
    if offered:
        print(
            f"[{label}] latency ms, steady state (requests started after the first {ARRIVAL_SECONDS:.0f} s, "
            f"when all {args.volunteers} volunteers arrived at once): p50 {percentile(steady, 0.5):.0f} "
            f"p95 {percentile(steady, 0.95):.0f} p99 {steady_p99:.0f} "
            f"(target p99 < {TARGET_P99_MS:.0f}: {'met' if steady_p99 < TARGET_P99_MS else 'NOT met'})"
        )
    for name in ("next", "answer"):
        values = result["latencies"][name]
        print(
            f"[{label}] latency ms, {name:6}: p50 {percentile(values, 0.5):.0f} p95 {percentile(values, 0.95):.0f} "
            f"p99 {percentile(values, 0.99):.0f} mean {statistics.fmean(values) * 1000 if values else 0:.0f}"
        )
    print(
        f"[{label}] CPU in cores: load generator {cpu['generator']:.2f}, gunicorn {cpu['gunicorn']:.2f}, "
        f"PostgreSQL backends {cpu['postgres']:.2f} (+{cpu['postgres_other']:.2f} other PostgreSQL processes), "
        f"Redis {cpu['redis']:.2f}; whole machine {cpu['machine']:.2f} of {cpu['cores']:.1f}, of which "
        f"{cpu['kernel']:.2f} in the kernel (the rest is other work on this shared machine)"
    )
    if result["cycles"] and cpu["postgres"] > 0:
        # Web machines can be added; the database is the one that every answer goes through.
        per_cycle = 1000 * cpu["postgres"] / rate
        print(
            f"[{label}] PostgreSQL CPU per cycle {per_cycle:.2f} ms: one database core would serve "
            f"{1000 / per_cycle:.0f} cycles/s with any number of web machines"
        )
    return rate, p99, steady_p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volunteers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--tasks", type=int, default=40_000)
    parser.add_argument(
        "--rate",
        type=float,
        default=TARGET_CYCLES_PER_S,
        help="cycles/s offered by the paced run (each volunteer starts a cycle every volunteers/rate s; 0: skip)",
    )
    parser.add_argument(
        "--ceiling-seconds",
        type=float,
        default=10.0,
        help="also measure a view that does no work under the same server (0: skip)",
    )
    # gthread keeps connections alive (sync workers close each one).
    parser.add_argument("--workers", type=int, default=int(os.environ.get("GUNICORN_WORKERS", "0")) or None)
    parser.add_argument("--worker-class", default="gthread", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=int(os.environ.get("GUNICORN_THREADS", "0")) or None)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--sweep",
        default="100,150,200,250",
        help="also run paced at these offered rates (cycles/s, comma-separated; empty: skip) and print the "
        "highest whose p99 meets the target",
    )
    parser.add_argument(
        "--requests-per-task",
        choices=["two", "one", "both"],
        default="both",
        help='two: next-task then answer; one: the answer asks for the next task ("next": true) and '
        "next-task is called only when none came back; both (default): each run twice",
    )
    parser.add_argument(
        "--rate-limits",
        action="store_true",
        help="keep the rate limits on, as in production, with each volunteer's budgets raised 100-fold: "
        "the simulated volunteers are faster than people, so the limits are counted but never refuse",
    )
    parser.add_argument("--database", default="corroborate_load")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    # The production defaults (config/gunicorn.py) unless overridden here.
    sys.path.insert(0, str(REPO))
    from config import gunicorn as gunicorn_conf

    args.workers = args.workers or gunicorn_conf.workers
    args.threads = args.threads or gunicorn_conf.threads

    import tempfile

    database_url = args.admin_url.rsplit("/", 1)[0] + "/" + args.database
    var_dir = tempfile.mkdtemp(prefix="corroborate-load-")
    admin_sql(args.admin_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    admin_sql(args.admin_url, f'CREATE DATABASE "{args.database}"')
    server = None
    failed = False
    try:
        env = server_env(database_url, var_dir)
        if args.rate_limits:
            env.update(RATE_LIMITED_BUT_NEVER_REFUSED)
        os.environ.update({k: v for k, v in env.items() if k not in os.environ or k in env})
        t0 = time.perf_counter()
        slug = populate(args.tasks)
        print(
            f"setup: {args.tasks} tasks in {time.perf_counter() - t0:.1f} s; autovacuum on this server: "
            f"{autovacuum_setting(args)} (each run starts after a VACUUM ANALYZE)",
            flush=True,
        )
        shape = f"{args.workers} {args.worker_class} workers" + (
            f" x {args.threads} threads" if args.worker_class == "gthread" else ""
        )
        port = free_port()
        server = start_server(env, port, args.workers, args.worker_class, args.threads)
        base = ("127.0.0.1", port)
        # A short warm-up so that every worker has imported its code and opened its connection.
        asyncio.run(run_load(base, slug, min(args.volunteers, 20), 2.0))
        acked: list[tuple[int, str]] = []
        modes = {"two": [False], "one": [True], "both": [False, True]}[args.requests_per_task]
        for one_request in modes if args.rate > 0 else []:
            label = "paced, 1 request per task" if one_request else "paced"
            paced = measured(
                base, slug, args, server.pid, ceiling=False, rate=args.rate, one_request=one_request
            )
            report(label, args, paced, shape, offered=args.rate)
            acked += paced["acked"]
        # The sweep: the highest offered rate this machine serves within the latency target.
        sustained: dict[tuple[bool, str], float] = {}
        for offered in [float(r) for r in args.sweep.split(",") if r.strip()]:
            for one_request in modes:
                label = f"sweep {offered:.0f}/s" + (", 1 request per task" if one_request else "")
                paced = measured(
                    base, slug, args, server.pid, ceiling=False, rate=offered, one_request=one_request
                )
                _, p99, steady_p99 = report(label, args, paced, shape, offered=offered)
                acked += paced["acked"]
                for over, value in (("the whole run", p99), ("steady state", steady_p99)):
                    if value < TARGET_P99_MS:
                        key = (one_request, over)
                        sustained[key] = max(sustained.get(key, 0.0), offered)
        for one_request in modes if args.sweep.strip() else []:
            for over in ("the whole run", "steady state"):
                best = sustained.get((one_request, over))
                print(
                    f"[sweep] {'1 request' if one_request else '2 requests'} per task: highest offered rate with "
                    f"p99 < {TARGET_P99_MS:.0f} ms over {over}: "
                    + (f"{best:.0f} cycles/s" if best else "none of those tried")
                    + f" (target {TARGET_CYCLES_PER_S:.0f})"
                )
        for one_request in modes:
            label = "saturation, 1 request per task" if one_request else "saturation"
            result = measured(base, slug, args, server.pid, ceiling=False, one_request=one_request)
            rate, _, _ = report(label, args, result, shape)
            acked += result["acked"]
            if not one_request:
                two_request_rate = rate
        rate = two_request_rate if False in modes else rate
        problems = check_database(acked)
        print(
            "[database checks] "
            + (
                "ok (no duplicates, no task over max, every 201 stored, ledger intact with an entry per answer)"
                if not problems
                else "; ".join(problems)
            ),
            flush=True,
        )
        failed = bool(problems)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        server = None
        if args.ceiling_seconds > 0:
            port = free_port()
            server = start_server(
                env,
                port,
                args.workers,
                args.worker_class,
                args.threads,
                app="benchmarks.volunteer_load:ceiling_application",
            )
            base = ("127.0.0.1", port)
            asyncio.run(run_load(base, slug, min(args.volunteers, 20), 2.0, ceiling=True))
            args.seconds = args.ceiling_seconds
            ceiling = measured(base, slug, args, server.pid, ceiling=True)
            ceiling_rate, ceiling_p99, _ = report("ceiling: empty view", args, ceiling, shape)
            print(
                f"upper bound on this machine now: {ceiling_rate:.0f} cycles/s (2 requests through the full "
                f"middleware, session, CSRF and DRF stack, no SQL), p99 {ceiling_p99:.0f} ms; "
                f"Corroborate reaches {100 * rate / ceiling_rate:.0f}% of it"
            )
        if failed:
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
