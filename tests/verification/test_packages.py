"""Evidence packages: export_evidence writes a BagIt bag that verify_package and bagit accept; tampering is named."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tasks import services as task_services
from tasks.models import Campaign, Task, Volunteer
from tests.conftest import run_command as run
from tests.factories import UserFactory
from verification import ledger, packages
from verification import services as verification_services
from verification.models import Answer, EvidenceItem, EvidenceSet, Export, LedgerEntry

pytestmark = pytest.mark.django_db


def answered_campaign(geotiff: Path, *, slug: str = "darfur") -> Campaign:
    """A real ingest of a small GeoTIFF, three volunteers answering every tile, one adjudication."""
    campaign = task_services.campaign_create(slug=slug, title="Darfur", kind=Campaign.Kind.IMAGERY)
    task_services.source_ingest_imagery(campaign=campaign, before=geotiff / "RGB.byte.tif", tile_size_px=256)
    volunteers = [Volunteer.objects.create() for _ in range(3)]
    tasks = list(Task.objects.filter(campaign=campaign).order_by("id"))
    for index, task in enumerate(tasks):
        for v, volunteer in enumerate(volunteers):
            label = "destroyed" if index % 2 == 0 else "intact"
            if index == 1 and v == 2:
                label = "destroyed"
            answer: dict[str, Any] = {"damage": label}
            if index == 0:
                answer["marks"] = [[100 + v, 120]]
            verification_services.answer_submit(
                task=task, volunteer=volunteer, answer=answer, client_id=uuid.uuid4()
            )
    reviewer = UserFactory()
    verification_services.decision_record(
        task=tasks[1], reviewer=reviewer, label="intact", note="Roofs visible on the after image."
    )
    return campaign


@pytest.fixture
def campaign(geotiff: Path) -> Campaign:
    return answered_campaign(geotiff)


@pytest.fixture
def package(campaign: Campaign, tmp_path: Path) -> Path:
    out = tmp_path / "package"
    code, _, err = run("export_evidence", "--campaign", campaign.slug, "--out", str(out))
    assert code == 0, err
    return out


def test_export_writes_a_bag_with_every_listed_file_and_a_summary(campaign: Campaign, tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    code, summary, err = run("export_evidence", "--campaign", campaign.slug, "--out", str(out))
    assert code == 0, err
    assert summary is not None and summary["path"] == str(out)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert summary["files"] == len(files)
    assert summary["bytes"] == sum(p.stat().st_size for p in files)
    for name in [
        "bagit.txt",
        "bag-info.txt",
        "manifest-sha256.txt",
        "tagmanifest-sha256.txt",
        "data/methodology.md",
        "data/evidence.geojson",
        "data/evidence.kml",
        "data/consensus.csv",
        "data/answers.csv",
        "data/provenance/sources.json",
        "data/provenance/custody.jsonl",
        "data/provenance/ledger.jsonl",
        "data/figures/agreement_histogram.png",
        "data/figures/overview_map.png",
        "data/figures/progress_over_time.png",
    ]:
        assert (out / name).is_file(), name
    assert not list(tmp_path.glob("*.partial-*"))
    export = Export.objects.get(campaign=campaign)
    assert export.status == Export.Status.COMPLETE and export.files == summary["files"]


def test_package_is_valid_for_verify_package_and_the_bagit_library(package: Path) -> None:
    import bagit

    code, summary, err = run("verify_package", str(package))
    assert code == 0, err
    assert summary is not None and summary["valid"]
    bag = bagit.Bag(str(package))
    bag.validate()
    assert bag.version_info == (1, 0) and "sha256" in bag.algorithms


def test_ledger_head_hash_is_the_head_before_the_export_record(campaign: Campaign, package: Path) -> None:
    info = packages.read_bag_info(package)
    lines = [json.loads(line) for line in (package / "data/provenance/ledger.jsonl").open()]
    assert ledger.verify_entries(lines, expected_head=info["Ledger-Head-Hash"]) is None
    assert all(set(line) == {"seq", "prev_hash", "entry_hash", "record"} for line in lines)
    export_entry = LedgerEntry.objects.filter(campaign=campaign).order_by("-seq").first()
    assert export_entry is not None and export_entry.record["type"] == "export"
    assert export_entry.prev_hash == info["Ledger-Head-Hash"] == lines[-1]["entry_hash"]
    manifest_sha = packages._sha256_file(package / "manifest-sha256.txt")
    assert export_entry.record["manifest_sha256"] == manifest_sha


def test_custody_lists_ingest_derive_review_and_export_in_ledger_order(package: Path) -> None:
    events = [json.loads(line) for line in (package / "data/provenance/custody.jsonl").open()]
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["ingest", "derive"] and "review" in kinds and kinds[-1] == "export"
    seqs = [e["ledger_seq"] for e in events if "ledger_seq" in e]
    assert seqs == sorted(seqs)
    derive = next(e for e in events if e["event"] == "derive")
    assert derive["software"].startswith("corroborate") and derive["params"]["tile_size_px"] == 256


def test_geojson_has_one_polygon_feature_per_task_and_consensus_points(
    campaign: Campaign, package: Path
) -> None:
    collection = json.loads((package / "data/evidence.geojson").read_text())
    assert collection["type"] == "FeatureCollection"
    tiles = [f for f in collection["features"] if f["geometry"]["type"] == "Polygon"]
    points = [f for f in collection["features"] if f["geometry"]["type"] == "Point"]
    assert len(tiles) == Task.objects.filter(campaign=campaign).count()
    for feature in tiles:
        ring = feature["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and all(-180 <= x <= 180 and -90 <= y <= 90 for x, y in ring)
        props = feature["properties"]
        assert set(props) >= {"label", "confidence", "agreement", "n_answers", "reviewer_decision"}
        assert len(props["source_sha256"]) == 64
    decided = [f for f in tiles if f["properties"]["reviewer_decision"]]
    assert [f["properties"]["reviewer_decision"] for f in decided] == ["intact"]
    assert len(points) == 1 and points[0]["properties"]["n_volunteers"] == 3


def test_kml_is_well_formed_with_a_placemark_per_task_and_point(campaign: Campaign, package: Path) -> None:
    from xml.etree import ElementTree

    root = ElementTree.parse(package / "data/evidence.kml").getroot()
    ns = {"k": "http://www.opengis.net/kml/2.2"}
    assert len(root.findall(".//k:Placemark/k:Polygon", ns)) == Task.objects.filter(campaign=campaign).count()
    assert len(root.findall(".//k:Placemark/k:Point", ns)) == 1


def test_answers_csv_has_every_answer_under_pseudonyms_only(campaign: Campaign, package: Path) -> None:
    rows = list(csv.DictReader((package / "data/answers.csv").open()))
    assert len(rows) == Answer.objects.filter(campaign=campaign).count()
    assert {r["volunteer"][:2] for r in rows} == {"P-"}
    assert len({r["volunteer"] for r in rows}) == 3
    text = (package / "data/answers.csv").read_text()
    for volunteer in Volunteer.objects.all():
        assert str(volunteer.public_id) not in text and volunteer.pseudonym not in text
    consensus = list(csv.DictReader((package / "data/consensus.csv").open()))
    assert len(consensus) == Task.objects.filter(campaign=campaign).count()


def test_the_same_volunteer_gets_different_pseudonyms_in_two_packages(
    campaign: Campaign, package: Path, tmp_path: Path
) -> None:
    second = tmp_path / "second"
    assert run("export_evidence", "--campaign", campaign.slug, "--out", str(second))[0] == 0

    def pseudonyms(root: Path) -> set[str]:
        return {r["volunteer"] for r in csv.DictReader((root / "data/answers.csv").open())}

    assert pseudonyms(package).isdisjoint(pseudonyms(second))


def test_media_sources_methodology_and_figures_describe_the_campaign(
    campaign: Campaign, package: Path
) -> None:
    task = Task.objects.filter(campaign=campaign).order_by("id").first()
    assert task is not None
    assert list((package / "data/media").glob(f"task-{task.pk}-before-*.jpg"))
    sources = json.loads((package / "data/provenance/sources.json").read_text())["sources"]
    assert sources[0]["original_name"] == "RGB.byte.tif" and sources[0]["metadata"]["crs"]
    methodology = (package / "data/methodology.md").read_text()
    for phrase in ["damage", "at least 3", "0.95", "auto", "corroborate 0.1.0", "3 volunteers"]:
        assert phrase in methodology, phrase
    assert (package / "data/figures/overview_map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evidence_set_export_takes_the_latest_frozen_version(campaign: Campaign, tmp_path: Path) -> None:
    from django.utils import timezone

    tasks = list(Task.objects.filter(campaign=campaign).order_by("id"))
    frozen = EvidenceSet.objects.create(
        campaign=campaign, name="villages", version=1, frozen_at=timezone.now()
    )
    EvidenceItem.objects.create(evidence_set=frozen, task=tasks[0])
    draft = EvidenceSet.objects.create(campaign=campaign, name="villages", version=2)
    EvidenceItem.objects.bulk_create([EvidenceItem(evidence_set=draft, task=t) for t in tasks])
    out = tmp_path / "set"
    code, summary, err = run(
        "export_evidence", "--campaign", campaign.slug, "--evidence-set", "villages", "--out", str(out)
    )
    assert code == 0, err
    assert summary is not None and summary["tasks"] == 1 and "v1" in summary["scope"]


def test_empty_export_fails_clearly_and_writes_nothing(tmp_path: Path) -> None:
    task_services.campaign_create(slug="empty", title="Empty", kind=Campaign.Kind.IMAGERY)
    out = tmp_path / "empty"
    code, summary, err = run("export_evidence", "--campaign", "empty", "--out", str(out))
    assert code == 1 and summary is None
    assert err.startswith("error: nothing to export") and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.iterdir()) and not Export.objects.exists()


def test_an_interrupted_export_leaves_no_package_and_no_complete_export(
    campaign: Campaign, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from verification import figures

    def crash(*args: Any, **kwargs: Any) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "overview_map", crash)
    out = tmp_path / "pkg"
    ledger_before = LedgerEntry.objects.filter(campaign=campaign).count()
    with pytest.raises(KeyboardInterrupt):
        verification_services.evidence_export(campaign=campaign, out=out)
    assert not out.exists() and not list(tmp_path.iterdir())
    assert Export.objects.get().status == Export.Status.FAILED
    assert LedgerEntry.objects.filter(campaign=campaign).count() == ledger_before


def test_verify_names_a_file_with_one_changed_byte(package: Path) -> None:
    target = package / "data/consensus.csv"
    payload = bytearray(target.read_bytes())
    payload[10] ^= 1
    target.unlink()  # media may be hard links; never write through them
    target.write_bytes(bytes(payload))
    code, _, err = run("verify_package", str(package))
    assert code == 1 and "data/consensus.csv" in err and "changed" in err


def test_verify_names_a_removed_file(package: Path) -> None:
    (package / "data/answers.csv").unlink()
    code, _, err = run("verify_package", str(package))
    assert code == 1 and err.startswith("error: data/answers.csv") and "removed" in err


def test_verify_names_an_added_file(package: Path) -> None:
    (package / "data/extra.txt").write_text("slipped in")
    code, _, err = run("verify_package", str(package))
    assert code == 1 and "data/extra.txt" in err and "added" in err


def test_verify_names_an_edited_ledger_entry(package: Path) -> None:
    path = package / "data/provenance/ledger.jsonl"
    lines = path.read_text().splitlines()
    entry = json.loads(lines[3])
    entry["record"]["tampered"] = True
    lines[3] = json.dumps(entry)
    path.write_text("\n".join(lines) + "\n")
    code, _, err = run("verify_package", str(package))
    assert code == 1 and "ledger.jsonl" in err and "seq 3" in err


def test_verify_ledger_accepts_an_intact_chain(campaign: Campaign) -> None:
    code, summary, err = run("verify_ledger", "--campaign", campaign.slug)
    assert code == 0, err
    assert summary is not None and summary["entries"] == LedgerEntry.objects.filter(campaign=campaign).count()


def test_verify_ledger_detects_an_edited_row(campaign: Campaign) -> None:
    LedgerEntry.objects.filter(campaign=campaign, seq=4).update(record={"type": "answer", "forged": True})
    code, _, err = run("verify_ledger", "--campaign", campaign.slug)
    assert code == 1 and "seq 4" in err and "edited" in err


def test_verify_ledger_detects_a_deleted_last_row(campaign: Campaign) -> None:
    last = LedgerEntry.objects.filter(campaign=campaign).order_by("-seq").values_list("pk", flat=True)[0]
    LedgerEntry.objects.filter(pk=last).delete()  # a queryset delete bypasses the model's refusal
    code, _, err = run("verify_ledger", "--campaign", campaign.slug)
    assert code == 1 and "expected head" in err


def test_verify_ledger_detects_a_deleted_middle_row(campaign: Campaign) -> None:
    LedgerEntry.objects.filter(campaign=campaign, seq=2).delete()
    code, _, err = run("verify_ledger", "--campaign", campaign.slug)
    assert code == 1 and "expected seq 2" in err


def test_verify_ledger_detects_reordered_rows(campaign: Campaign) -> None:
    first, second = (
        LedgerEntry.objects.filter(campaign=campaign, seq__in=[3, 4]).order_by("seq").values("pk", "record")
    )
    LedgerEntry.objects.filter(pk=first["pk"]).update(record=second["record"])
    LedgerEntry.objects.filter(pk=second["pk"]).update(record=first["record"])
    code, _, err = run("verify_ledger", "--campaign", campaign.slug)
    assert code == 1 and "seq 3" in err


# ---------------------------------------------------------------- export pages and job


def log_in_an_owner(client: Any, campaign: Campaign, settings: Any, tmp_path: Path) -> Any:
    """An owner of the campaign logged in, with packages written under tmp_path."""
    from tasks.services import membership_set

    settings.EXPORT_ROOT = tmp_path / "exports"
    owner = UserFactory()
    membership_set(campaign=campaign, user=owner, role="owner")
    client.force_login(owner)
    return owner


def export_through_the_page(client: Any, campaign: Campaign) -> dict[str, Any]:
    from tasks.jobs import job_run
    from tasks.models import Job

    response = client.post(f"/researcher/{campaign.slug}/exports/", {"evidence_set": ""})
    assert response.status_code == 302
    job = Job.objects.get(kind="export_evidence")
    assert response["Location"] == f"/researcher/{campaign.slug}/exports/jobs/{job.pk}/"
    job_run(job.pk)
    status = client.get(f"/researcher/{campaign.slug}/exports/jobs/{job.pk}/?format=json").json()
    return dict(status)


def test_an_owner_exports_through_a_job_and_downloads_the_package(
    campaign: Campaign, client: Any, settings: Any, tmp_path: Path
) -> None:
    import io
    import tarfile

    log_in_an_owner(client, campaign, settings, tmp_path)
    status = export_through_the_page(client, campaign)
    assert status["status"] == "done" and status["progress"] == 1.0 and status["download_url"]
    page = client.get(f"/researcher/{campaign.slug}/exports/")
    assert page.status_code == 200 and b"Download" in page.content
    response = client.get(status["download_url"])
    assert response.status_code == 200 and response["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content))) as archive:
        names = archive.getnames()
    assert any(n.endswith("/bagit.txt") for n in names) and any(n.endswith("data/answers.csv") for n in names)
    one = client.get(status["download_url"] + "?file=data/consensus.csv")
    assert one.status_code == 200 and b"task_id" in b"".join(one.streaming_content)
    assert client.get(status["download_url"] + "?file=../../etc/passwd").status_code == 404


def test_a_failed_export_job_reports_the_reason(client: Any, settings: Any, tmp_path: Path) -> None:
    campaign = task_services.campaign_create(slug="nothing", title="Nothing", kind=Campaign.Kind.IMAGERY)
    log_in_an_owner(client, campaign, settings, tmp_path)
    status = export_through_the_page(client, campaign)
    assert status["status"] == "failed" and status["message"].startswith("nothing to export")


def test_viewers_download_but_cannot_export_and_strangers_see_nothing(
    campaign: Campaign, package: Path, client: Any
) -> None:
    from tasks.services import membership_set

    viewer, stranger = UserFactory(), UserFactory()
    membership_set(campaign=campaign, user=viewer, role="viewer")
    export = Export.objects.get(campaign=campaign)
    client.force_login(viewer)
    assert client.post(f"/researcher/{campaign.slug}/exports/").status_code == 403
    assert client.get(f"/researcher/{campaign.slug}/exports/{export.pk}/download").status_code == 200
    client.force_login(stranger)
    assert client.get(f"/researcher/{campaign.slug}/exports/").status_code == 404
    assert client.get(f"/researcher/{campaign.slug}/exports/{export.pk}/download").status_code == 404


def test_methodology_reports_the_expert_audit_and_the_package_still_verifies(
    campaign: Campaign, tmp_path: Path
) -> None:
    """An outside expert reads how often blind reviewers confirmed the crowd, with its interval, and finds the
    draw and every audit answer in the packaged ledger."""
    reviewer = UserFactory()
    retired = Task.objects.filter(campaign=campaign, status=Task.Status.RETIRED).count()
    assert retired >= 2
    items = verification_services.audit_draw(campaign=campaign, size=2, by=reviewer)
    verification_services.audit_answer(item=items[0], label=items[0].crowd_label, note="", by=reviewer)
    other = "intact" if items[1].crowd_label == "destroyed" else "destroyed"
    verification_services.audit_answer(item=items[1], label=other, note="ash rings", by=reviewer)
    verification_services.consensus_recompute_campaign(campaign=campaign)
    out = tmp_path / "audited"
    code, _, err = run("export_evidence", "--campaign", campaign.slug, "--out", str(out))
    assert code == 0, err
    methodology = (out / "data/methodology.md").read_text()
    assert "## Expert audit" in methodology and "matched theirs on 1 of 2: 0.500" in methodology
    assert "95% Wilson interval 0.095-0.905" in methodology
    assert "Expert labels in the last refit: 0 gold tasks and 2 audit answers" in methodology
    records = [json.loads(line)["record"] for line in (out / "data/provenance/ledger.jsonl").open()]
    assert [r["type"] for r in records].count("audit") == 2 and any(
        r["type"] == "audit_draw" for r in records
    )
    assert run("verify_package", str(out))[0] == 0


def test_the_export_pages_sit_in_the_workspace_with_the_set_chosen_and_in_french(
    campaign: Campaign, client: Any, settings: Any, tmp_path: Path
) -> None:
    log_in_an_owner(client, campaign, settings, tmp_path)
    # The evidence set page's Export button names its set; the export page starts from it.
    evidence_set = EvidenceSet.objects.create(campaign=campaign, name="Burned villages")
    set_page = client.get(f"/researcher/{campaign.slug}/evidence/{evidence_set.pk}/").content.decode()
    assert f'href="/researcher/{campaign.slug}/exports/?set=Burned%20villages"' in set_page
    page = client.get(f"/researcher/{campaign.slug}/exports/?set=Burned villages").content.decode()
    assert '<option value="Burned villages" selected>' in page
    assert 'aria-current="page">Exports</a>' in page and 'class="crumbs"' in page
    status = export_through_the_page(client, campaign)
    job_page = client.get(f"/researcher/{campaign.slug}/exports/jobs/{status['id']}/").content.decode()
    assert 'id="export-download"' in job_page and 'aria-current="page">Exports</a>' in job_page
    client.cookies.load({"django_language": "fr"})
    french = client.get(f"/researcher/{campaign.slug}/exports/").content.decode()
    assert "Paquets de preuves" in french and "Télécharger" in french
