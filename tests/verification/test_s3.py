"""S3 against a real HTTP peer (moto's threaded server): uploads with checksums, Object Lock, faults, media storage."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tasks import services as task_services
from tasks.models import Campaign
from tests.conftest import run_command as run
from tests.verification.test_packages import answered_campaign
from verification import s3
from verification.models import Export, LedgerEntry

pytestmark = pytest.mark.django_db


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def client(endpoint: str) -> Any:
    return s3.s3_client(endpoint_url=endpoint, region="us-east-1")


@pytest.fixture
def locked_bucket(client: Any) -> str:
    name = f"evidence-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def test_export_uploads_the_package_with_sha256_checksum_and_metadata(
    geotiff: Path, tmp_path: Path, endpoint: str, client: Any, locked_bucket: str
) -> None:
    campaign = answered_campaign(geotiff)
    out = tmp_path / "pkg"
    code, summary, err = run(
        "export_evidence", "--campaign", campaign.slug, "--out", str(out), "--s3-bucket", locked_bucket,
        "--s3-prefix", "cases/darfur", "--s3-endpoint-url", endpoint,
        "--object-lock-mode", "GOVERNANCE", "--object-lock-days", "30",
    )  # fmt: skip
    assert code == 0, err
    assert summary is not None and summary["uploaded"] is True
    assert summary["s3_uri"] == f"s3://{locked_bucket}/cases/darfur/pkg.tar"
    head = client.head_object(Bucket=locked_bucket, Key="cases/darfur/pkg.tar", ChecksumMode="ENABLED")
    assert head["Metadata"]["sha256"] == summary["archive_sha256"]
    assert head["ObjectLockMode"] == "GOVERNANCE"
    body = client.get_object(Bucket=locked_bucket, Key="cases/darfur/pkg.tar")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == summary["archive_sha256"]
    export = Export.objects.get()
    assert export.uploaded and export.s3_uri == summary["s3_uri"]
    last = LedgerEntry.objects.filter(campaign=campaign).order_by("-seq").first()
    assert last is not None and last.record["type"] == "export_uploaded"


def test_a_locked_version_cannot_be_deleted_or_overwritten(
    tmp_path: Path, client: Any, locked_bucket: str
) -> None:
    path = tmp_path / "evidence.tar"
    path.write_bytes(b"original evidence")
    s3.object_upload(
        client=client, path=path, bucket=locked_bucket, key="e.tar",
        sha256_hex=hashlib.sha256(b"original evidence").hexdigest(),
        lock=s3.LockSettings(mode="COMPLIANCE", days=1),
    )  # fmt: skip
    version = client.head_object(Bucket=locked_bucket, Key="e.tar")["VersionId"]
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=locked_bucket, Key="e.tar", VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    client.put_object(Bucket=locked_bucket, Key="e.tar", Body=b"forged")
    kept = client.get_object(Bucket=locked_bucket, Key="e.tar", VersionId=version)["Body"].read()
    assert kept == b"original evidence"


def test_legal_hold_is_set_when_asked(tmp_path: Path, client: Any, locked_bucket: str) -> None:
    path = tmp_path / "held.tar"
    path.write_bytes(b"held")
    s3.object_upload(
        client=client, path=path, bucket=locked_bucket, key="held.tar",
        sha256_hex=hashlib.sha256(b"held").hexdigest(), lock=s3.LockSettings(legal_hold=True),
    )  # fmt: skip
    hold = client.get_object_legal_hold(Bucket=locked_bucket, Key="held.tar")
    assert hold["LegalHold"]["Status"] == "ON"


def test_large_files_go_up_in_parts(tmp_path: Path, client: Any, locked_bucket: str) -> None:
    payload = os.urandom(s3.MULTIPART_THRESHOLD + 1024)
    path = tmp_path / "big.tar"
    path.write_bytes(payload)
    s3.object_upload(
        client=client, path=path, bucket=locked_bucket, key="big.tar",
        sha256_hex=hashlib.sha256(payload).hexdigest(),
    )  # fmt: skip
    head = client.head_object(Bucket=locked_bucket, Key="big.tar")
    assert head["ETag"].strip('"').endswith("-2")
    assert head["Metadata"]["sha256"] == hashlib.sha256(payload).hexdigest()


def test_presigned_link_downloads_the_object(tmp_path: Path, client: Any, locked_bucket: str) -> None:
    client.put_object(Bucket=locked_bucket, Key="p.tar", Body=b"package bytes")
    url = s3.presigned_url(client=client, uri=f"s3://{locked_bucket}/p.tar", filename="p.tar")
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"package bytes"


def test_unreachable_s3_keeps_the_local_package_marked_not_uploaded(geotiff: Path, tmp_path: Path) -> None:
    campaign = answered_campaign(geotiff)
    out = tmp_path / "pkg"
    code, summary, err = run(
        "export_evidence", "--campaign", campaign.slug, "--out", str(out), "--s3-bucket", "nowhere",
        "--s3-endpoint-url", f"http://127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert code == 1 and err.startswith("error: upload to s3://nowhere/pkg.tar failed after 4 attempts")
    assert "local package is kept" in err and err.count("\n") == 1
    assert summary is not None and summary["uploaded"] is False and summary["path"] == str(out)
    assert run("verify_package", str(out))[0] == 0
    export = Export.objects.get()
    assert export.status == Export.Status.COMPLETE and not export.uploaded and not export.s3_uri
    assert export.message.startswith("not uploaded")
    assert not list(tmp_path.glob("*.tar*"))


def test_a_peer_that_drops_the_connection_mid_upload_is_retried_then_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that reads part of each request body and hangs up: the upload fails cleanly after retries."""
    # Credentials of its own: without them boto3 gives up before connecting (it passed only when an
    # earlier test in the same worker had left the moto server's credentials in the environment).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    connections = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(conn)
            conn.recv(4096)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    path = tmp_path / "p.tar"
    path.write_bytes(os.urandom(256 * 1024))
    try:
        with pytest.raises(s3.UploadError, match="failed after 3 attempts"):
            s3.object_upload(
                client=s3.s3_client(endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1"),
                path=path, bucket="b", key="p.tar", sha256_hex="0" * 64, attempts=3, backoff_seconds=0.05,
            )  # fmt: skip
    finally:
        listener.close()
    assert len(connections) >= 3


def test_media_storage_on_s3_receives_ingested_originals_and_tiles(
    geotiff: Path, settings: Any, endpoint: str, client: Any
) -> None:
    bucket = f"media-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": endpoint,
                "region_name": "us-east-1",
                "file_overwrite": False,
                "default_acl": None,
                "location": "media",
            },
        },
    }
    campaign = task_services.campaign_create(slug="on-s3", title="On S3", kind=Campaign.Kind.IMAGERY)
    summary = task_services.source_ingest_imagery(
        campaign=campaign, before=geotiff / "byte.tif", tile_size_px=64
    )
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert any(k.startswith("media/sources/") and k.endswith("byte.tif") for k in keys)
    assert sum(k.startswith("media/tiles/") for k in keys) >= summary["tasks_created"] > 0
    original = next(k for k in keys if k.startswith("media/sources/"))
    body = client.get_object(Bucket=bucket, Key=original)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == summary["source_sha256"]
