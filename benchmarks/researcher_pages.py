"""Researcher pages at the scale of a global campaign: how long each page takes, against a small campaign.

Decode Darfur had 28,600 volunteers and 326,000 km² of imagery. This writes, in a scratch PostgreSQL
database, a campaign of 40,000 tiles (--tasks) answered three times each by 20,000 volunteers
(--volunteers; each with an accuracy between 0.5 and 0.95 on a hidden truth of three labels), runs the
periodic refit on it (`consensus_recompute_campaign`: every consensus, every volunteer's reliability),
then asks for every research page of it as its owner (Django's test client, in-process: the view, its
queries and its template, no network), best of three, and prints milliseconds and bytes beside the same
page of a campaign of 400 tiles and 200 volunteers in the same database, in the same run.

Run: .venv/bin/python benchmarks/researcher_pages.py [--tasks 40000] [--volunteers 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from volunteer_load import scratch_arguments, scratch_campaign

LABELS = ("no_structures", "intact", "destroyed")
PAGES = (
    ("overview", "/researcher/{slug}/"),
    ("dashboard", "/researcher/{slug}/dashboard/"),
    ("map page", "/researcher/{slug}/map/"),
    ("map data", "/researcher/{slug}/map.geojson"),
    ("review queue", "/researcher/{slug}/review/"),
    ("task detail", "/researcher/{slug}/tasks/{task}/"),
    ("evidence sets", "/researcher/{slug}/evidence/"),
    ("audit", "/researcher/{slug}/audit/"),
    ("sources", "/researcher/{slug}/sources/"),
    ("exports", "/researcher/{slug}/exports/"),
    ("API consensus", "/api/v1/campaigns/{slug}/consensus"),
)


def crowd(campaign: Any, *, n_volunteers: int, seed: int) -> None:
    """Volunteers and three answers per task, written with bulk_create (the answer path is not measured here)."""
    import numpy as np
    from django.utils import timezone

    from tasks.models import Task, Volunteer
    from verification.models import Answer

    rng = np.random.default_rng(seed)
    volunteers = Volunteer.objects.bulk_create(
        [Volunteer(is_anonymous=True) for _ in range(n_volunteers)], batch_size=5000
    )
    accuracy = rng.uniform(0.5, 0.95, n_volunteers)
    task_ids = list(Task.objects.filter(campaign=campaign, is_gold=False).values_list("id", flat=True))
    truth = rng.integers(0, len(LABELS), len(task_ids))
    now = timezone.now()
    answers = []
    for task_id, right in zip(task_ids, truth.tolist(), strict=True):
        for v in rng.choice(n_volunteers, 3, replace=False).tolist():
            label = right if rng.random() < accuracy[v] else int((right + rng.integers(1, 3)) % 3)
            answers.append(
                Answer(
                    task_id=task_id,
                    volunteer=volunteers[v],
                    campaign=campaign,
                    answer={"damage": LABELS[label]},
                    label=LABELS[label],
                    client_id=uuid.uuid4(),
                    created_at=now,
                )
            )
    Answer.objects.bulk_create(answers, batch_size=5000)
    Task.objects.filter(campaign=campaign, is_gold=False).update(answer_count=3)
    # Footprints from the bounding boxes, as ingest writes them, for the map.
    tasks = list(Task.objects.filter(campaign=campaign).only("id", "bbox"))
    for task in tasks:
        w, s, e, n = task.bbox
        task.footprint = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    Task.objects.bulk_update(tasks, ["footprint"], batch_size=2000)


def small_campaign(owner: Any) -> Any:
    """A campaign of 400 tiles like the big one's, in the same database: the comparison."""
    from tasks import services
    from tasks.models import Campaign, Source, Task

    campaign = services.campaign_create(
        slug="small", title="Small", kind=Campaign.Kind.IMAGERY, created_by=owner
    )
    big = Task.objects.filter(campaign__slug="load").order_by("id")[:400]
    source = Source.objects.create(
        campaign=campaign,
        kind=Source.Kind.RASTER,
        file="sources/small/b.tif",
        original_name="b.tif",
        sha256="2" * 64,
        size_bytes=1,
        ready=True,
        role="before",
    )
    Task.objects.bulk_create(
        [
            Task(
                campaign=campaign,
                source=source,
                key=t.key,
                kind=t.kind,
                grid_row=t.grid_row,
                grid_col=t.grid_col,
                window=t.window,
                bbox=t.bbox,
                footprint=t.footprint,
                media=t.media,
            )
            for t in big
        ]
    )
    return campaign


def timed_pages(client: Any, campaign: Any) -> dict[str, tuple[float, int, int]]:
    from tasks.models import Task

    task = Task.objects.filter(campaign=campaign, is_gold=False).order_by("id").first()
    assert task is not None
    results = {}
    for name, path in PAGES:
        url = path.format(slug=campaign.slug, task=task.pk)
        best, size, status = float("inf"), 0, 0
        for _ in range(3):
            started = time.perf_counter()
            response = client.get(url)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            best = min(best, time.perf_counter() - started)
            size, status = len(body), response.status_code
        results[name] = (best * 1000, size, status)
    return results


def profiled(fn: Any, on: bool) -> None:
    if not on:
        fn()
        return
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.runcall(fn)
    pstats.Stats(profile).sort_stats("cumulative").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    scratch_arguments(parser, database="corroborate_pages_bench", tasks=40_000)
    parser.add_argument("--volunteers", type=int, default=20_000)
    parser.add_argument(
        "--profile", action="append", default=[], help="print where a page's time goes (its name)"
    )
    parser.add_argument("--profile-refit", action="store_true", help="print where the refit's time goes")
    args = parser.parse_args()
    with scratch_campaign(args) as campaign:
        from django.contrib.auth import get_user_model
        from django.db import connection
        from django.test import Client

        from tasks import services
        from verification.services import consensus_recompute_campaign

        campaign.__class__.objects.filter(pk=campaign.pk).update(min_answers=3, max_answers=5, gold_share=0.1)
        campaign.refresh_from_db()
        owner = get_user_model().objects.create_user(username="owner", password="x")
        services.membership_set(campaign=campaign, user=owner, role="owner")
        started = time.perf_counter()
        crowd(campaign, n_volunteers=args.volunteers, seed=1)
        written = time.perf_counter() - started
        small = small_campaign(owner)
        crowd(small, n_volunteers=200, seed=2)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        refits = {}
        for c in (campaign, small):
            started = time.perf_counter()
            profiled(
                lambda c=c: consensus_recompute_campaign(campaign=c), args.profile_refit and c == campaign
            )
            refits[c.slug] = time.perf_counter() - started
        print(
            f"campaign: {args.tasks} tiles, {args.volunteers} volunteers, {3 * args.tasks} answers "
            f"(written in {written:.1f} s); comparison: 400 tiles, 200 volunteers, 1200 answers"
        )
        print(
            f"periodic refit (consensus_recompute_campaign): {refits['load']:.1f} s vs {refits['small']:.2f} s"
        )
        from django.core.management import call_command

        call_command(
            "collectstatic", interactive=False, verbosity=0
        )  # production settings serve hashed names
        client = Client(HTTP_HOST="127.0.0.1", HTTP_ACCEPT_ENCODING="gzip")  # bytes as a browser gets them
        client.force_login(owner)
        for name, path in PAGES:
            if name in args.profile:
                task = campaign.tasks.filter(is_gold=False).order_by("id").first()
                profiled(
                    lambda path=path, task=task: client.get(path.format(slug=campaign.slug, task=task.pk)),
                    True,
                )
        big_pages, small_pages = timed_pages(client, campaign), timed_pages(client, small)
        print(f"{'page':<16}{'ms':>9}{'bytes':>12}{'small ms':>10}{'small bytes':>13}  status")
        for name, _ in PAGES:
            ms, size, status = big_pages[name]
            small_ms, small_size, small_status = small_pages[name]
            print(
                f"{name:<16}{ms:>9.0f}{size:>12,}{small_ms:>10.0f}{small_size:>13,}  {status}/{small_status}"
            )


if __name__ == "__main__":
    main()
