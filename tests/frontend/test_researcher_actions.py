"""Researcher actions through the pages: uploads validated by content, gold CSV, members, blocking, promotion."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.test import Client

from tasks import jobs, services
from tasks.models import Campaign, CampaignMembership, Job, Source, Task
from tests.factories import CampaignFactory, TaskFactory, VolunteerFactory, grant
from verification import services as verification_services
from verification.models import Answer, AuditItem, LedgerEntry, VolunteerReliability

pytestmark = pytest.mark.django_db

User = get_user_model()
XHR = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}


@pytest.fixture
def owner() -> Any:
    return User.objects.create(username="lead")


@pytest.fixture
def campaign(owner: Any) -> Any:
    campaign: Any = CampaignFactory(slug="darfur", min_answers=2, max_answers=3)
    grant(campaign, owner, CampaignMembership.Role.OWNER)
    return campaign


@pytest.fixture
def client(owner: Any) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def stored_files(media_root: Path) -> list[Path]:
    return [p for p in media_root.rglob("*") if p.is_file()]


def upload(path: Path, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes(), content_type="image/tiff")


def test_a_corrupt_geotiff_is_refused_with_one_line_and_nothing_stored(
    campaign, client, geotiff, _isolated_media
):
    response = client.post(
        "/researcher/darfur/sources/",
        {"before": upload(geotiff / "corrupt.tif"), "tile_size_px": 256, "overlap_px": 32},
        **XHR,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error and "\n" not in error and "Traceback" not in error
    assert error.startswith("corrupt.tif is damaged: its pixels cannot be read (TIFF")
    assert stored_files(_isolated_media) == []
    assert not Job.objects.exists() and not Source.objects.exists()


def test_upload_checks_speak_the_researchers_language(campaign, client, geotiff, _isolated_media):
    """The media checks raise in English with their figures apart (tasks/messages.py); the page says the
    same in French, GDAL's own words included as they are."""
    client.cookies.load({"django_language": "fr"})
    response = client.post(
        "/researcher/darfur/sources/",
        {"before": upload(geotiff / "corrupt.tif"), "tile_size_px": 256, "overlap_px": 32},
        **XHR,
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith(
        "corrupt.tif est endommagé : ses pixels ne peuvent pas être lus (TIFF"
    )
    empty = client.post(
        "/researcher/darfur/sources/",
        {"before": SimpleUploadedFile("vide.tif", b"", content_type="image/tiff"), "tile_size_px": 256},
        **XHR,
    )
    assert empty.status_code == 400 and "vide" in json.dumps(empty.json(), ensure_ascii=False), empty.json()
    assert stored_files(_isolated_media) == [] and not Job.objects.exists()
    footage = CampaignFactory(slug="footage", kind=Campaign.Kind.VIDEO)
    grant(footage, CampaignMembership.objects.get(campaign=campaign).user, CampaignMembership.Role.OWNER)
    picture = client.post(
        "/researcher/footage/sources/",
        {"video": upload(geotiff / "RGB.byte.tif", "clip.mp4"), "max_segment_seconds": 10},
        **XHR,
    )
    assert picture.status_code == 400 and picture.json()["error"] == "c'est un fichier TIFF, pas une vidéo"
    client.cookies.load({"django_language": "en"})
    english = client.post(
        "/researcher/footage/sources/",
        {"video": upload(geotiff / "RGB.byte.tif", "clip.mp4"), "max_segment_seconds": 10},
        **XHR,
    )
    assert english.json()["error"] == "this is a TIFF file, not a video"


def test_every_media_check_message_is_in_the_french_catalogue() -> None:
    """A message added to the media checks without its French is caught here, not by a researcher."""
    import ast

    from django.utils import translation

    templates = set()
    for module in ("tasks/imagery.py", "tasks/video.py"):
        for node in ast.walk(ast.parse(Path(module).read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "N_":
                templates.add(node.args[0].value)
    assert len(templates) >= 35
    with translation.override("fr"):
        missing = sorted(t for t in templates if translation.gettext(t) == t)
    assert missing == []


def test_said_falls_back_to_the_words_raised_when_it_cannot_translate() -> None:
    from django.utils import translation

    from frontend.i18n import said
    from tasks.imagery import ImageryError
    from tasks.messages import Explained

    with translation.override("fr"):
        try:
            try:
                raise ImageryError("%(name)s has no pixels", name="a.tif")
            except ImageryError as exc:
                raise services.IngestError(str(exc)) from exc
        except services.IngestError as wrapped:
            assert said(wrapped) == "a.tif n'a aucun pixel"
        assert said(Explained("%(name)s has no pixels", name="b.tif")) == "b.tif n'a aucun pixel"
        assert said(Explained("a sentence nobody translated")) == "a sentence nobody translated"
        assert said(services.IngestError("plain words")) == "plain words"
        prefixed = services.IngestError("line 3: a.tif has no pixels")
        prefixed.__cause__ = ImageryError("%(name)s has no pixels", name="a.tif")
        assert said(prefixed) == "line 3: a.tif has no pixels"  # other words than its cause's: as raised


def test_upload_queue_validates_before_storing(campaign, owner, geotiff, _isolated_media):
    # An upload large enough for Django to spool to disk: the message names the researcher's file,
    # not the spool file (tmpab12cd.upload.tif).
    spooled = TemporaryUploadedFile("corrupt.tif", "image/tiff", 0, None)
    spooled.write((geotiff / "corrupt.tif").read_bytes())
    spooled.seek(0)
    with pytest.raises(services.IngestError, match=r"^corrupt.tif is damaged: its pixels cannot be read"):
        services.upload_queue(
            campaign=campaign,
            kind="ingest_imagery",
            files={"before": spooled},
            params={},
            created_by=owner,
        )
    assert Path(spooled.temporary_file_path()).is_file()  # Django's spool file is Django's to remove
    spooled.close()
    assert stored_files(_isolated_media) == []


def test_a_geotiff_upload_queues_a_job_whose_progress_can_be_polled(
    campaign, client, geotiff, _isolated_media
):
    response = client.post(
        "/researcher/darfur/sources/",
        {"before": upload(geotiff / "RGB.byte.tif"), "tile_size_px": 256, "overlap_px": 0},
        **XHR,
    )
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["job"]["id"])
    assert job.kind == "ingest_imagery" and job.campaign_id == campaign.pk
    assert job.params["before"].startswith("uploads/") and job.params["before"].endswith("/RGB.byte.tif")
    assert job.params["before_name"] == "RGB.byte.tif"
    assert (_isolated_media / job.params["before"]).is_file()
    status = client.get(f"/researcher/darfur/jobs/{job.pk}.json").json()
    assert status["status"] == "queued" and status["progress"] == 0
    jobs.job_run(job.pk)
    status = client.get(f"/researcher/darfur/jobs/{job.pk}.json").json()
    assert status["status"] == "done" and status["progress"] == 1 and status["status_label"] == "Done"
    job.refresh_from_db()
    created = job.result["tasks_created"]
    assert created > 0 and status["summary"].startswith(f"{created} tasks created")
    assert job.result["tiles_skipped"] == 0 and status["summary"] == f"{created} tasks created"
    assert status["campaign_tasks"] == Task.objects.filter(campaign=campaign).count() > 0
    assert not (_isolated_media / job.params["before"]).exists()  # the upload goes once ingested
    page = client.get("/researcher/darfur/sources/").content.decode()
    assert f'id="job-{job.pk}"' in page and 'data-job-status="done"' in page


def test_a_finished_job_is_summed_up_in_the_researchers_language():
    """The job's result (JSON written by the ingest) becomes one sentence on the sources page."""
    from django.utils import translation

    from frontend.views_researcher import job_summary

    imagery = Job(
        kind="ingest_imagery",
        status=Job.Status.DONE,
        result={
            "tasks_created": 4,
            "tasks_total": 4,
            "skipped_reasons": {"empty": 2, "outside_aoi": 1},
            "tiles_cloudy": 1,
        },
    )
    again = Job(kind="ingest_imagery", status=Job.Status.DONE, result={"tasks_created": 0, "tasks_total": 9})
    video = Job(
        kind="ingest_video",
        status=Job.Status.DONE,
        result={
            "tasks_created": 3,
            "tasks_total": 3,
            "duration_seconds": 36.04,
            "cuts_seconds": [9.0],
            "near_duplicates": [{"task": 1}, {"task": 2}],
        },
    )
    running = Job(kind="ingest_video", status=Job.Status.RUNNING, message="12 of 40 tiles", result={})
    assert job_summary(imagery) == (
        "4 tasks created; 2 tiles skipped (no data); 1 tile skipped (outside the area of interest); "
        "1 tile flagged cloudy"
    )
    assert job_summary(again) == "already ingested: its 9 tasks were kept, none added"
    assert job_summary(video) == (
        "3 tasks created; 36.0 s of video, 1 shot cut; 2 near-duplicates of footage already here"
    )
    assert job_summary(running) == "12 of 40 tiles"
    with translation.override("fr"):
        assert job_summary(imagery) == (
            "4 tâches créées ; 2 tuiles ignorées (sans données) ; 1 tuile ignorée (hors de la zone d'intérêt) ; "
            "1 tuile signalée nuageuse"
        )
        assert job_summary(video).startswith("3 tâches créées ; 36.0 s de vidéo, 1 changement de plan")
        assert job_summary(running) == "12 tuiles sur 40"
        shots = Job(kind="ingest_video", status=Job.Status.RUNNING, message="detecting shots", result={})
        assert job_summary(shots) == "détection des changements de plan"
        failed = Job(kind="ingest_imagery", status=Job.Status.FAILED, message="x.tif is damaged", result={})
        assert job_summary(failed) == "x.tif is damaged"  # an error's own words


def test_the_campaign_form_speaks_french_from_labels_to_errors(owner):
    owner.user_permissions.add(Permission.objects.get(codename="add_campaign"))
    client = Client()
    client.force_login(owner)
    client.cookies.load({"django_language": "fr"})
    page = client.get("/researcher/new/").content.decode()
    assert "Titre" in page and "Réponses minimum" in page and "Confiance de retrait" in page
    assert 'id="researcher-strings"' in page and "Ajouter une question" in page  # researcher.js's words
    fields = {
        "slug": "toits",
        "title": "Toits",
        "kind": "imagery",
        "status": "draft",
        "question_set": "",
        "min_answers": 5,
        "max_answers": 2,
        "retirement_confidence": 0.9,
        "gold_share": 0.1,
        "lease_seconds": 600,
    }
    bad = client.post("/researcher/new/", fields)
    assert bad.status_code == 200 and "doit être au moins égal au minimum" in bad.content.decode()
    assert not Campaign.objects.filter(slug="toits").exists()
    made = client.post("/researcher/new/", {**fields, "max_answers": 8}, follow=True)
    assert "Campagne Toits créée. Ajoutez maintenant ses images ou sa vidéo." in made.content.decode()
    assert Campaign.objects.get(slug="toits").max_answers == 8


def test_a_video_campaign_refuses_a_geotiff(owner, geotiff, _isolated_media):
    campaign: Any = CampaignFactory(slug="footage", kind=Campaign.Kind.VIDEO)
    grant(campaign, owner, CampaignMembership.Role.OWNER)
    client = Client()
    client.force_login(owner)
    response = client.post(
        "/researcher/footage/sources/",
        {"video": upload(geotiff / "RGB.byte.tif"), "max_segment_seconds": 10},
        **XHR,
    )
    assert response.status_code == 400
    assert stored_files(_isolated_media) == []


def test_a_campaign_is_created_with_a_custom_question_set(owner):
    owner.user_permissions.add(Permission.objects.get(codename="add_campaign"))
    client = Client()
    client.force_login(owner)
    bad = client.post(
        "/researcher/new/",
        {
            "slug": "roofs",
            "title": "Roofs",
            "kind": "imagery",
            "status": "draft",
            "question_set": '{"primary": "x", "questions": []}',
            "min_answers": 3,
            "max_answers": 5,
            "retirement_confidence": 0.9,
            "gold_share": 0.1,
            "lease_seconds": 600,
        },
    )
    assert bad.status_code == 200 and "non-empty list" in bad.content.decode()
    assert not Campaign.objects.filter(slug="roofs").exists()
    question_set = {
        "primary": "roof",
        "questions": [
            {
                "key": "roof",
                "type": "single",
                "text": "Roof?",
                "choices": [
                    {"value": "metal", "label": "Metal", "help": "shiny", "image": "/static/x.jpg"},
                    {"value": "thatch", "label": "Thatch"},
                ],
            },
            {"key": "where", "type": "location", "text": "Where?"},
        ],
    }
    good = client.post(
        "/researcher/new/",
        {
            "slug": "roofs",
            "title": "Roofs",
            "kind": "imagery",
            "status": "draft",
            "question_set": json.dumps(question_set),
            "min_answers": 3,
            "max_answers": 5,
            "retirement_confidence": 0.9,
            "gold_share": 0.1,
            "lease_seconds": 600,
        },
    )
    assert good.status_code == 302 and good["Location"] == "/researcher/roofs/sources/"
    campaign = Campaign.objects.get(slug="roofs")
    assert campaign.question_set == question_set and campaign.retirement_confidence == 0.9
    assert CampaignMembership.objects.get(campaign=campaign).role == "owner"


def test_gold_csv_import_is_all_or_nothing(campaign, client):
    tasks = [TaskFactory(campaign=campaign) for _ in range(3)]
    bad = f"task_id,label,explanation\n{tasks[0].pk},destroyed,ash\n{tasks[1].pk},burnt,??\n"
    response = client.post(
        "/researcher/darfur/gold/", {"csv_file": SimpleUploadedFile("g.csv", bad.encode())}
    )
    assert response.status_code == 400 and "line 3" in response.content.decode()
    assert not Task.objects.filter(is_gold=True).exists()
    good = f'task_id,label,explanation\n{tasks[0].pk},destroyed,"Huts before, ash after"\n{tasks[1].pk},intact,Roofs\n'
    response = client.post(
        "/researcher/darfur/gold/", {"csv_file": SimpleUploadedFile("g.csv", good.encode())}
    )
    assert response.status_code == 302
    gold = Task.objects.get(pk=tasks[0].pk)
    assert gold.is_gold and gold.gold_answer == {"damage": "destroyed"}
    assert gold.gold_explanation == "Huts before, ash after"
    assert LedgerEntry.objects.filter(campaign=campaign, record__type="gold_set").count() == 2


def test_gold_csv_refuses_a_task_of_another_campaign(campaign, owner):
    other = TaskFactory()
    with pytest.raises(services.IngestError, match="not in campaign darfur"):
        services.gold_import_csv(campaign=campaign, csv_text=f"{other.pk},intact,x\n", by=owner)


def test_owners_manage_roles_and_keep_one_owner(campaign, client, owner):
    User.objects.create(username="ana")
    assert (
        client.post("/researcher/darfur/members/", {"username": "ana", "role": "reviewer"}).status_code == 302
    )
    assert CampaignMembership.objects.get(campaign=campaign, user__username="ana").role == "reviewer"
    response = client.post("/researcher/darfur/members/", {"username": "lead", "role": "viewer"})
    assert response.status_code == 200 and "at least one owner" in response.content.decode()
    assert (
        client.post("/researcher/darfur/members/", {"username": "ana", "role": "remove"}).status_code == 302
    )
    assert not CampaignMembership.objects.filter(campaign=campaign, user__username="ana").exists()
    kinds = list(LedgerEntry.objects.filter(campaign=campaign).values_list("record__type", flat=True))
    assert kinds == ["member_role", "member_removed"]


def answer(task: Task, volunteer: Any, label: str) -> None:
    verification_services.answer_submit(
        task=task, volunteer=volunteer, answer={"damage": label}, client_id=uuid.uuid4()
    )


def test_blocking_a_volunteer_recomputes_the_consensus(campaign, client):
    task: Any = TaskFactory(campaign=campaign)
    honest, other, spammer = VolunteerFactory(), VolunteerFactory(), VolunteerFactory()
    answer(task, honest, "intact")
    answer(task, spammer, "destroyed")
    answer(task, other, "intact")
    response = client.post(
        "/researcher/darfur/volunteers/block", {"volunteer": str(spammer.public_id), "blocked": "on"}
    )
    assert response.status_code == 302
    assert VolunteerReliability.objects.get(campaign=campaign, volunteer=spammer).blocked
    task.consensus.refresh_from_db()
    assert task.consensus.n_answers == 2 and task.consensus.label == "intact"
    assert Answer.objects.filter(task=task).count() == 3  # answers are never deleted
    page = client.get("/researcher/darfur/dashboard/").content.decode()
    assert spammer.pseudonym in page and "Unblock" in page and "<svg" in page


def test_promotion_from_the_page(campaign, client, owner):
    task: Any = TaskFactory(campaign=campaign)
    verification_services.decision_record(task=task, reviewer=owner, label="intact", note="roofs seen")
    follow_up = CampaignFactory(slug="count-huts")
    grant(follow_up, owner, CampaignMembership.Role.OWNER)
    response = client.post("/researcher/darfur/promote/", {"target": follow_up.pk, "labels": ["intact"]})
    assert response.status_code == 302
    assert Task.objects.get(campaign=follow_up).promoted_from_id == task.pk
    assert client.post("/researcher/darfur/promote/", {"target": follow_up.pk}).status_code == 400


def test_the_workspace_names_states_and_roles_in_french_when_chosen(client: Client, campaign: Any) -> None:
    """Campaign states, roles and task states are values in the database; the pages name them in the
    researcher's language (frontend/templatetags/labels.py), with the agreement French needs."""
    TaskFactory(campaign=campaign)
    TaskFactory(campaign=campaign, status=Task.Status.RETIRED)
    english = client.get("/researcher/darfur/").content.decode()
    assert ">Live<" in english and ">owner<" in english and "<span>retired</span>" in english
    client.post("/i18n/setlang/", {"language": "fr", "next": "/"})
    page = client.get("/researcher/darfur/").content.decode()
    assert ">En ligne<" in page and ">propriétaire<" in page
    assert "<span>ouvertes</span>" in page and "<span>retirées</span>" in page
    assert "Imagerie ·" in page
    task = Task.objects.filter(campaign=campaign, status=Task.Status.RETIRED).get()
    assert ">retirée<" in client.get(f"/researcher/darfur/tasks/{task.pk}/").content.decode()
    # Why a task is where it is: stored in English with its figures, read in French.
    collecting = Task.objects.filter(campaign=campaign, status=Task.Status.OPEN).get()
    verification_services.answer_submit(
        task=collecting, volunteer=VolunteerFactory(), answer={"damage": "intact"}, client_id=uuid.uuid4()
    )
    assert collecting.consensus.reason == "collecting answers: 1 so far (minimum 2)"
    french = "réponses en cours de collecte : 1 pour l&#x27;instant (minimum 2)"  # as HTML escapes it
    assert french in client.get(f"/researcher/darfur/tasks/{collecting.pk}/").content.decode()
    assert french in client.get("/researcher/darfur/review/").content.decode()


def test_labels_are_named_as_the_question_set_names_them_on_the_workspace_pages(client, campaign):
    """Researchers read "Structures destroyed", not the stored value ``destroyed``; the value stays in
    filters and exports."""
    task = TaskFactory(campaign=campaign)
    for _ in range(2):
        verification_services.answer_submit(
            task=task, volunteer=VolunteerFactory(), answer={"damage": "destroyed"}, client_id=uuid.uuid4()
        )
    waiting = TaskFactory(campaign=campaign)
    verification_services.answer_submit(
        task=waiting, volunteer=VolunteerFactory(), answer={"damage": "intact"}, client_id=uuid.uuid4()
    )
    page = client.get(f"/researcher/darfur/tasks/{task.pk}/").content.decode()
    assert re.search(r'<p class="big-label">Structures destroyed <span', page)
    assert page.count("<td>Structures destroyed</td>") == 3  # the label's probability, each answer
    assert "(updated at the latest answer)</caption>" in page  # how the consensus was worked out
    review = client.get("/researcher/darfur/review/").content.decode()
    assert "<td>Structures intact</td>" in review and 'value="intact"' in review
    dashboard = client.get("/researcher/darfur/dashboard/").content.decode()
    assert "<title>Structures destroyed: 1</title>" in dashboard and "<title>destroyed:" not in dashboard


def test_the_review_queue_pages_through_every_waiting_task_in_order_and_filters_by_label(
    client: Client, campaign: Any
) -> None:
    """A hard campaign sends hundreds of tasks to review: the queue says how many wait, shows them a page at a
    time (needs review first, then the least confident), and narrows to one crowd label."""
    from verification.models import Consensus

    def waiting(status: str, confidence: float, label: str) -> Task:
        task = TaskFactory(campaign=campaign, status=status)
        Consensus.objects.create(task=task, label=label, confidence=confidence, n_answers=3, agreement=0.6)
        return task

    # Needs-review tasks even when fairly confident must come before every merely uncertain open task.
    late_review = [waiting(Task.Status.NEEDS_REVIEW, 0.9, "intact") for _ in range(3)]
    uncertain = [
        waiting(Task.Status.OPEN, 0.3 + i / 1000, "destroyed" if i % 2 else "intact") for i in range(150)
    ]
    waiting(Task.Status.RETIRED, 0.99, "intact")  # settled: not in the queue
    first = client.get("/researcher/darfur/review/").content.decode()
    assert "153 tasks wait for a reviewer." in first and "Showing 1–100." in first and "Page 1 of 2" in first
    ids = [int(m) for m in re.findall(r'<tr data-task="(\d+)">', first)]
    assert ids[:3] == sorted(t.pk for t in late_review) and ids[3] == uncertain[0].pk and len(ids) == 100
    second = client.get("/researcher/darfur/review/?page=2").content.decode()
    more = [int(m) for m in re.findall(r'<tr data-task="(\d+)">', second)]
    assert len(more) == 53 and not set(ids) & set(more) and "Showing 101–153." in second
    only = client.get("/researcher/darfur/review/?label=destroyed").content.decode()
    assert "75 tasks wait for a reviewer." in only and 'rel="next"' not in only
    # A page or label that does not exist falls back to what does.
    assert client.get("/researcher/darfur/review/?page=99&label=nonsense").status_code == 200
    assert "Page 2 of 2" in client.get("/researcher/darfur/review/?page=99").content.decode()


def test_a_reviewer_audits_a_random_sample_blind_and_sees_how_often_the_crowd_was_right(
    client: Client, campaign: Any
) -> None:
    """As Amnesty's Decoders did: draw settled tasks at random, answer them without seeing the crowd's label,
    and read the crowd's accuracy with its interval beside the confidence the crowd claimed."""
    from verification.models import Consensus

    for _ in range(4):
        task = TaskFactory(campaign=campaign, status=Task.Status.RETIRED)
        Consensus.objects.create(task=task, label="destroyed", confidence=0.96, n_answers=3, agreement=1.0)
    empty = client.get("/researcher/darfur/audit/").content.decode()
    assert 'id="audit-draw"' in empty and 'id="audit-continue"' not in empty
    response = client.post("/researcher/darfur/audit/draw", {"size": "3"})
    assert response.status_code == 302
    page = client.get("/researcher/darfur/audit/").content.decode()
    assert "3 drawn tasks wait for an answer." in page
    href = re.search(r'id="audit-continue" href="([^"]+)"', page)[1]
    for n in range(3):
        blind = client.get(href).content.decode()
        answer_part = blind.split('id="audit-answer"', 1)[1]
        assert (
            "destroyed</b>" not in blind and "0.96" not in blind
        )  # the crowd's label and confidence stay hidden
        assert 'value="unsure"' in answer_part and 'value="destroyed"' in answer_part
        label = "intact" if n == 0 else "destroyed"
        response = client.post(href, {"label": label, "note": "looked at both dates"})
        assert response.status_code == 302
        href = response["Location"]
    assert href == "/researcher/darfur/audit/"
    report = client.get(href).content.decode()
    assert "0.667" in report and "0.960" in report and 'id="audit-disagreements"' in report
    # An answered task is not answered again.
    done = AuditItem.objects.filter(campaign=campaign, expert_label="intact").get()
    again = client.post(f"/researcher/darfur/audit/{done.task_id}/", {"label": "destroyed", "note": ""})
    assert again.status_code == 409
    assert AuditItem.objects.get(pk=done.pk).expert_label == "intact"
    # Nothing left to draw: said plainly, nothing drawn.
    client.post("/researcher/darfur/audit/draw", {"size": "5"})
    client.post("/researcher/darfur/audit/draw", {"size": "5"})
    assert AuditItem.objects.filter(campaign=campaign).count() == 4


def test_the_overview_and_dashboard_count_gold_tasks_beside_the_others(campaign, client):
    # The task counts leave gold tasks out; the sources count every tile. The gold count reconciles them.
    TaskFactory(campaign=campaign)
    TaskFactory(campaign=campaign, status=Task.Status.RETIRED)
    TaskFactory(campaign=campaign, is_gold=True, gold_answer={"damage": "intact"})
    for path in ("/researcher/darfur/", "/researcher/darfur/dashboard/"):
        page = client.get(path).content.decode()
        assert "<b>1</b><span>gold</span>" in page, path
        assert ">2</b><span>tasks</span>" in page, path


def test_the_dashboard_lists_the_busiest_and_the_flagged_volunteers_and_finds_any_other(
    campaign, client, monkeypatch
):
    from verification import selectors as verification_selectors

    monkeypatch.setattr(verification_selectors, "VOLUNTEER_ROWS", 2)
    Campaign.objects.filter(pk=campaign.pk).update(max_answers=10, retirement_confidence=0.999999)
    tasks = [TaskFactory(campaign=campaign) for _ in range(4)]
    volunteers = [VolunteerFactory() for _ in range(5)]
    for volunteer, n in zip(volunteers, (4, 3, 2, 1, 1), strict=True):
        for task in tasks[:n]:
            answer(task, volunteer, "intact")
    flagged = volunteers[4]
    VolunteerReliability.objects.filter(campaign=campaign, volunteer=flagged).update(flagged=True)
    page = client.get("/researcher/darfur/dashboard/").content.decode()
    shown = [v.pseudonym for v in volunteers if f'data-volunteer="{v.pseudonym}"' in page]
    # The flagged one first, then the two with most answers; the others are a search away.
    assert shown == [volunteers[0].pseudonym, volunteers[1].pseudonym, flagged.pseudonym]
    assert page.index(flagged.pseudonym) < page.index(volunteers[0].pseudonym)
    assert "3 of 5 volunteers" in page
    quiet = volunteers[3]
    found = client.get(f"/researcher/darfur/dashboard/?volunteer={quiet.pseudonym}").content.decode()
    assert (
        f'data-volunteer="{quiet.pseudonym}"' in found and "1 volunteer whose pseudonym starts with" in found
    )
    assert f'data-volunteer="{volunteers[0].pseudonym}"' not in found
    nobody = client.get("/researcher/darfur/dashboard/?volunteer=V-zz'; drop").content.decode()
    assert "No volunteer of this campaign has that pseudonym." in nobody


def test_whole_campaign_reads_count_a_decision_over_the_crowd(campaign, client, owner):
    # The label chart, the map and the API's consensus list read every task as plain columns; a
    # reviewer's decision still wins over the crowd in each, and a task without answers has no label.
    from verification import selectors as verification_selectors

    ring = [[25.0, 13.0], [25.1, 13.0], [25.1, 13.1], [25.0, 13.1], [25.0, 13.0]]
    footprint = {"type": "Polygon", "coordinates": [ring]}
    decided, crowd_only, unanswered = (TaskFactory(campaign=campaign, footprint=footprint) for _ in range(3))
    for task in (decided, crowd_only):
        for _ in range(3):
            answer(task, VolunteerFactory(), "intact")
    verification_services.decision_record(task=decided, reviewer=owner, label="destroyed", note="ash rings")
    assert verification_selectors.label_distribution(campaign) == [("destroyed", 1), ("intact", 1)]
    features = {
        f["id"]: f["properties"] for f in client.get("/researcher/darfur/map.geojson").json()["features"]
    }
    assert features[decided.pk]["label"] == "destroyed" and features[decided.pk]["adjudicated"]
    assert features[crowd_only.pk]["label"] == "intact" and not features[crowd_only.pk]["adjudicated"]
    assert features[unanswered.pk]["label"] is None and features[unanswered.pk]["n_answers"] == 0
    assert features[decided.pk]["url"] == f"/researcher/darfur/tasks/{decided.pk}/"
    assert client.get(features[decided.pk]["url"]).status_code == 200
    rows = {r["task_id"]: r for r in client.get("/api/v1/campaigns/darfur/consensus").json()}
    assert rows[decided.pk]["label"] == "destroyed" and rows[decided.pk]["status"] == "adjudicated"
    assert rows[crowd_only.pk]["label"] == "intact" and rows[crowd_only.pk]["confidence"] > 0.5
    # Both whole-campaign reads are compressed for browsers and scripts that accept it.
    for path in ("/researcher/darfur/map.geojson", "/api/v1/campaigns/darfur/consensus"):
        assert client.get(path, HTTP_ACCEPT_ENCODING="gzip")["Content-Encoding"] == "gzip", path
    assert rows[unanswered.pk] == {
        "task_id": unanswered.pk,
        "label": None,
        "confidence": 0.0,
        "agreement": 0.0,
        "n_answers": 0,
        "status": "open",
    }
