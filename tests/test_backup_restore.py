"""Backup and restore as README documents them: pg_dump plus a tar of the media, restored into a fresh database."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest
from django.db import connection

from tasks import services
from tasks.models import Campaign, Task
from tests.conftest import GEOTIFF
from verification import ledger

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _url(name: str) -> str:
    settings = connection.settings_dict
    return f"postgresql://{settings['USER'] or 'postgres'}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{name}"


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_backup_restores_into_a_fresh_database_with_media(
    require_postgres, _isolated_media: Path, tmp_path: Path
) -> None:
    if not (shutil.which("pg_dump") and shutil.which("pg_restore")):
        pytest.fail("pg_dump and pg_restore are needed for backups")
    campaign = services.campaign_create(slug="backup", title="Backup", kind=Campaign.Kind.IMAGERY)
    services.source_ingest_imagery(campaign=campaign, before=GEOTIFF / "RGB.byte.tif")
    tasks = Task.objects.filter(campaign=campaign).count()
    source_db = connection.settings_dict["NAME"]
    dump = tmp_path / "corroborate.dump"
    media_tar = tmp_path / "media.tar.gz"
    # The documented backup: a custom-format dump and a tarball of the media folder.
    subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", _url(source_db)], check=True)
    with tarfile.open(media_tar, "w:gz") as archive:
        archive.add(_isolated_media, arcname="media")
    restored_db = f"corroborate_restore_{uuid.uuid4().hex[:8]}"
    restored_media = tmp_path / "restored"
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", restored_db], check=True)
    try:
        subprocess.run(["pg_restore", "--no-owner", f"--dbname={_url(restored_db)}", str(dump)], check=True)
        with tarfile.open(media_tar) as archive:
            archive.extractall(restored_media, filter="data")
        import psycopg

        with psycopg.connect(_url(restored_db)) as restored:
            count = restored.execute(
                "select count(*) from tasks_task where campaign_id = %s", [campaign.pk]
            ).fetchone()
            rows = restored.execute(
                "select seq, prev_hash, entry_hash, record from verification_ledgerentry where campaign_id = %s order by seq",
                [campaign.pk],
            ).fetchall()
            head = restored.execute(
                "select head_hash from verification_ledgerhead where campaign_id = %s", [campaign.pk]
            ).fetchone()
        assert count is not None and count[0] == tasks
        lines = [{"seq": r[0], "prev_hash": r[1], "entry_hash": r[2], "record": r[3]} for r in rows]
        assert ledger.verify_entries(lines, expected_head=head[0] if head else None) is None
        assert _digests(restored_media / "media") == _digests(_isolated_media)
    finally:
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", restored_db], check=False
        )
