"""manage.py demo: set up the embedded database, demo media, campaigns and accounts, then serve the site."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandParser
from django.db import transaction

from config.commands import JsonCommand
from tasks import services
from tasks.models import Campaign, CampaignMembership, Job, Source, Task

DEMO_ACCOUNTS = [
    {"username": "researcher", "password": "corroborate-researcher", "role": "researcher"},
    {"username": "reviewer", "password": "corroborate-reviewer", "role": "reviewer"},
    {"username": "admin", "password": "corroborate-admin", "role": "admin"},
    {"username": "volunteer", "password": "corroborate-volunteer", "role": "volunteer"},
]

IMAGERY_TUTORIAL = [
    {
        "title": "Compare two dates",
        "text": "Each task shows the same patch of ground before and after. Press f to flicker between them.",
        "example": "no_structures",
    },
    {
        "title": "Look for huts",
        "text": "Villages are round huts with pale thatched roofs, often inside a fence ring.",
        "example": "intact",
    },
    {
        "title": "Spot destruction",
        "text": "Burned huts turn into dark ash rings. If you cannot tell, answer Unsure: it is never penalised.",
        "example": "destroyed",
    },
]

VIDEO_TUTORIAL = [
    {"title": "Watch the segment", "text": "Play the short clip and look at its three keyframes."},
    {
        "title": "Look for clues",
        "text": "Signs, landmarks, terrain, weather and shadows tell where and when.",
    },
    {
        "title": "Judge it",
        "text": "Does it show what it claims? Any sign of editing? Unsure is a fine answer.",
    },
]


class Command(JsonCommand):
    help = "Prepare the demo (database, media, campaigns, accounts) and serve the site with a worker."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-serve", action="store_true", help="stop after the set-up")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args: Any, **options: Any) -> None:
        super().handle(*args, **options)
        base = f"http://{options['host']}:{options['port']}"
        lines = [
            f"Classify as a volunteer at {base}/ (no account needed), or sign in at {base}/accounts/login/ as:"
        ]
        lines += [f"  {a['username']:<10} password {a['password']:<24} ({a['role']})" for a in DEMO_ACCOUNTS]
        self.stderr.write("\n".join(lines))
        if not options["no_serve"]:
            self._serve(options["host"], options["port"])

    def handle_json(self, *args: Any, **options: Any) -> dict[str, Any]:
        call_command("migrate", interactive=False, verbosity=0)
        accounts = self._accounts()
        researcher = get_user_model().objects.get(username="researcher")
        reviewer = get_user_model().objects.get(username="reviewer")
        media_dir = Path(settings.VAR_DIR) / "demo"
        media_dir.mkdir(parents=True, exist_ok=True)
        imagery = self._campaign(
            "demo-imagery",
            title="Decode Darfur (demo): were these villages destroyed?",
            kind=Campaign.Kind.IMAGERY,
            description=(
                "Synthetic before/after satellite images of a region in West Darfur. Compare the dates and tell "
                "us whether the huts you see were destroyed."
            ),
            tutorial=IMAGERY_TUTORIAL,
            owner=researcher,
            reviewer=reviewer,
        )
        footage = self._campaign(
            "demo-video",
            title="Verify the footage (demo): is this video what it claims?",
            kind=Campaign.Kind.VIDEO,
            description="A video said to show a market street after an attack. Check each segment for clues.",
            tutorial=VIDEO_TUTORIAL,
            owner=researcher,
            reviewer=reviewer,
        )
        jobs = []
        truth = None
        if not Source.objects.filter(campaign=imagery, ready=True).exists():
            from fixtures.synthetic_imagery import make_scene_pair

            before, after = media_dir / "darfur-2023-03-14.tif", media_dir / "darfur-2023-06-02.tif"
            truth = make_scene_pair(before, after)
            jobs.append(self._queue_upload(imagery, researcher, "ingest_imagery", before=before, after=after))
        if not Source.objects.filter(campaign=footage, ready=True).exists():
            from fixtures.synthetic_video import make_demo_video

            path = media_dir / "market-street.mp4"
            make_demo_video(path)
            jobs.append(self._queue_upload(footage, researcher, "ingest_video", video=path))
        if jobs:
            self._run_jobs_through_queue(jobs)
        if truth is not None:
            self._mark_gold(imagery, truth, researcher)
            # Each simulated answer would log a line (as real ones do): 140 lines that push the accounts
            # below off the screen of whoever runs `make demo`. Warnings still show.
            with _quiet("corroborate"):
                self._simulate_crowd(imagery, truth)
        self._evidence_set(imagery, researcher)
        return {
            "campaigns": [imagery.slug, footage.slug],
            "tasks": {c.slug: Task.objects.filter(campaign=c).count() for c in (imagery, footage)},
            "accounts": accounts,
            "url": f"http://{options['host']}:{options['port']}/",
        }

    def _accounts(self) -> list[dict[str, str]]:
        users = get_user_model().objects
        for account in DEMO_ACCOUNTS:
            user = users.filter(username=account["username"]).first()
            if user is None:
                user = users.create_user(username=account["username"], password=account["password"])
            if account["role"] == "admin" and not user.is_superuser:
                user.is_superuser = user.is_staff = True
                user.save()
        return [dict(a) for a in DEMO_ACCOUNTS]

    def _campaign(
        self, slug: str, *, owner: Any, reviewer: Any, tutorial: list[dict[str, str]], **fields: Any
    ) -> Campaign:
        campaign = Campaign.objects.filter(slug=slug).first()
        if campaign is None:
            campaign = services.campaign_create(slug=slug, created_by=owner, **fields)
        if campaign.tutorial != tutorial:
            campaign.tutorial = tutorial
            campaign.save(update_fields=["tutorial"])
        services.membership_set(campaign=campaign, user=reviewer, role=CampaignMembership.Role.REVIEWER)
        return campaign

    def _queue_upload(self, campaign: Campaign, user: Any, kind: str, **paths: Path) -> Job:
        """Put the files where a web upload would, and record the ingest job that the worker will run."""
        from tasks.storage import put_file

        params: dict[str, Any] = {}
        for role, path in paths.items():
            params[role] = put_file(f"uploads/demo/{path.name}", path)
            params[f"{role}_name"] = path.name
        with transaction.atomic():
            return services.job_create(kind=kind, params=params, campaign=campaign, created_by=user)

    def _run_jobs_through_queue(self, jobs: list[Job], timeout_s: float = 240) -> None:
        cluster = _start_cluster()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                states = list(
                    Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", "message")
                )
                if all(status in (Job.Status.DONE, Job.Status.FAILED) for status, _ in states):
                    failed = [message for status, message in states if status == Job.Status.FAILED]
                    if failed:
                        raise services.IngestError(f"demo ingest failed: {failed[0]}")
                    return
                time.sleep(0.5)
            raise services.IngestError("demo ingest jobs did not finish in time; is the worker running?")
        finally:
            _stop_cluster(cluster)

    def _mark_gold(self, campaign: Campaign, truth: Any, researcher: Any) -> None:
        """A few tiles whose answer the generator knows become gold tasks, with an explanation."""
        explanations = {
            "destroyed": "The huts visible before are replaced by dark ash rings after: they were burned.",
            "intact": "The same round pale roofs are there in both images: the huts are intact.",
            "no_structures": "Only sand, shrubs and tracks: there are no structures here.",
        }
        wanted = {"destroyed": 2, "intact": 2, "no_structures": 1}
        for task in Task.objects.filter(campaign=campaign, is_gold=False).order_by("id"):
            window = task.window or {}
            label = truth.label_for_window(
                window["col_off"], window["row_off"], window["width"], window["height"]
            )
            if wanted.get(label, 0) > 0:
                wanted[label] -= 1
                services.task_mark_gold(
                    task=task, answer={"damage": label}, explanation=explanations[label], by=researcher
                )

    def _simulate_crowd(self, campaign: Campaign, truth: Any, share: float = 0.5) -> None:
        """Ten simulated volunteers answer every gold task (as each newcomer's training ramp serves them) and
        half of the other tiles, so the researcher's dashboard, map, review queue and exports have something
        to show; the other half stays open for real volunteers.

        Most tiles get three answers and every fourth five, some of them split. The last two tiles answered
        are ones the simulated crowd finds ambiguous (burned or intact?): the campaign's maximum of answers,
        split evenly between volunteers of equal accuracy, so they end in the review queue for a reviewer
        to decide, as disputed tiles do in a real campaign.
        """
        import random
        import uuid

        from tasks.models import Volunteer
        from verification.services import answer_submit, consensus_recompute_campaign

        rng = random.Random(2023)
        labels = ["no_structures", "intact", "destroyed"]

        def truth_of(task: Task) -> str:
            window = task.window or {}
            return str(
                truth.label_for_window(
                    window["col_off"], window["row_off"], window["width"], window["height"]
                )
            )

        def answer(task: Task, volunteer: Volunteer, label: str) -> None:
            answer_submit(task=task, volunteer=volunteer, answer={"damage": label}, client_id=uuid.uuid4())

        def guess(right: str, accuracy: float) -> str:
            if rng.random() < 0.08:
                return "unsure"
            if rng.random() < accuracy:
                return right
            return rng.choice([x for x in labels if x != right])

        # Pairs of equal accuracy: a tile split between the two volunteers of every pair stays disputed.
        accuracies = (0.95, 0.95, 0.9, 0.9, 0.85, 0.85, 0.8, 0.8, 0.65, 0.65)
        crowd = [(Volunteer.objects.create(is_anonymous=True), accuracy) for accuracy in accuracies]
        for task in Task.objects.filter(campaign=campaign, is_gold=True).order_by("id"):
            right = truth_of(task)
            for volunteer, accuracy in crowd:
                answer(task, volunteer, guess(right, accuracy))
        tasks = list(Task.objects.filter(campaign=campaign, is_gold=False).order_by("id"))
        chosen = tasks[: int(len(tasks) * share)]
        disputed, settled = chosen[-2:], chosen[:-2]
        for index, task in enumerate(settled):
            right = truth_of(task)
            for volunteer, accuracy in crowd[:5] if index % 4 == 0 else crowd[:3]:
                answer(task, volunteer, guess(right, accuracy))
        # Each volunteer sees one of the two as burned and the other as intact: the split says the tiles are
        # hard, not that some volunteers misread burned huts (which a model could learn and discount).
        for flip, task in enumerate(disputed):
            for position, (volunteer, _) in enumerate(crowd[: campaign.max_answers]):
                answer(task, volunteer, ("destroyed", "intact")[(position + flip) % 2])
        consensus_recompute_campaign(campaign=campaign)

    def _evidence_set(self, campaign: Campaign, researcher: Any) -> None:
        """The tiles the crowd has settled, gathered into an evidence set ready to export (not yet frozen)."""
        from verification.models import EvidenceSet
        from verification.services import evidence_set_create

        name = "Settled tiles (demo)"
        if not EvidenceSet.objects.filter(campaign=campaign, name=name).exists():
            evidence_set_create(
                campaign=campaign,
                name=name,
                by=researcher,
                filters={"statuses": [Task.Status.RETIRED]},
                description="Every tile the simulated crowd retired with confidence; export it as a package.",
            )

    def _serve(self, host: str, port: int) -> None:
        # SIGTERM (a supervisor, `kill`) must stop the worker too, as Ctrl-C does: turn it into an exit.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        cluster = _start_cluster()
        self.stderr.write(
            f"Serving Corroborate at http://{host}:{port}/ with a job worker (Ctrl-C stops both)."
        )
        try:
            call_command("runserver", f"{host}:{port}", use_reloader=False, use_threading=True)
        finally:
            _stop_cluster(cluster)


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Log only warnings and errors of this logger while the block runs."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _start_cluster() -> subprocess.Popen[bytes]:
    """django-q's worker in its own process, exactly as `make worker` runs it."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=settings.BASE_DIR,
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop_cluster(cluster: subprocess.Popen[bytes]) -> None:
    cluster.terminate()
    try:
        cluster.wait(timeout=15)
    except subprocess.TimeoutExpired:
        cluster.kill()
