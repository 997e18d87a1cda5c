"""S3 upload of evidence packages: multipart, SHA-256 checksums, Object Lock retention and legal hold, retries."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger("corroborate.s3")

MULTIPART_THRESHOLD = 16 * 1024 * 1024


class UploadError(RuntimeError):
    """The upload failed after every retry; the message says why."""


@dataclass(frozen=True)
class LockSettings:
    mode: str | None = None  # GOVERNANCE or COMPLIANCE
    days: int = 0
    legal_hold: bool = False

    def extra_args(self, *, now: dt.datetime | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.mode:
            if self.mode not in ("GOVERNANCE", "COMPLIANCE"):
                raise ValueError("Object Lock mode must be GOVERNANCE or COMPLIANCE")
            if self.days <= 0:
                raise ValueError("Object Lock retention needs a positive number of days")
            now = now or dt.datetime.now(dt.UTC)
            args["ObjectLockMode"] = self.mode
            args["ObjectLockRetainUntilDate"] = now + dt.timedelta(days=self.days)
        if self.legal_hold:
            args["ObjectLockLegalHoldStatus"] = "ON"
        return args


def s3_client(*, endpoint_url: str | None = None, region: str | None = None, timeout: float = 10.0) -> Any:
    from django.conf import settings

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or getattr(settings, "S3_ENDPOINT_URL", None),
        region_name=region or getattr(settings, "S3_REGION", "us-east-1"),
        config=Config(
            connect_timeout=timeout,
            read_timeout=timeout * 3,
            retries={"max_attempts": 2, "mode": "standard"},
        ),
    )


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def object_upload(
    *,
    client: Any,
    path: Path,
    bucket: str,
    key: str,
    sha256_hex: str,
    lock: LockSettings = LockSettings(),
    attempts: int = 4,
    backoff_seconds: float = 0.5,
) -> str:
    """Upload one file (multipart above 16 MB) with S3's SHA-256 checksums and ours in the metadata.

    Retries with exponential backoff; a multipart upload that fails part-way is aborted by boto3, so a
    half-written object never appears. Returns the s3:// URI.
    """
    extra: dict[str, Any] = {
        "ChecksumAlgorithm": "SHA256",
        "Metadata": {"sha256": sha256_hex},
        **lock.extra_args(),
    }
    config = TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD, max_concurrency=4
    )
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            client.upload_file(str(path), bucket, key, ExtraArgs=extra, Config=config)
            return f"s3://{bucket}/{key}"
        except (BotoCoreError, ClientError, OSError) as exc:
            last = exc
            logger.warning("s3 upload failed", extra={"key": key, "attempt": attempt + 1, "error": str(exc)})
            if attempt + 1 < attempts:
                time.sleep(backoff_seconds * (2**attempt))
    raise UploadError(
        f"upload to s3://{bucket}/{key} failed after {attempts} attempts: {_short(last)}"
    ) from last


def _short(exc: Exception | None) -> str:
    text = str(exc or "unknown error").strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def presigned_url(*, client: Any, uri: str, expires_seconds: int = 3600, filename: str | None = None) -> str:
    bucket, key = split_uri(uri)
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if filename:
        params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
    return str(client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_seconds))
