"""Security habits: headers, no IP addresses in logs, decompression bombs refused, media served safely."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from django.test import Client
from PIL import Image

from config.logging import JsonFormatter


@pytest.mark.django_db
def test_pages_carry_security_headers(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_structured_logs_drop_ip_addresses_and_emails() -> None:
    record = logging.LogRecord("corroborate.test", logging.INFO, __file__, 1, "answer recorded", None, None)
    record.remote_addr = "203.0.113.7"
    record.email = "someone@example.org"
    record.task = 42
    line = JsonFormatter().format(record)
    assert "203.0.113.7" not in line and "example.org" not in line
    assert '"task": 42' in line


def test_gunicorn_access_log_format_has_no_client_address() -> None:
    text = (Path(__file__).resolve().parents[1] / "config" / "gunicorn.py").read_text()
    fmt = text.split("access_log_format = ", 1)[1].splitlines()[0]
    assert "%(h)s" not in fmt and "%(a)s" not in fmt and "X-Forwarded-For" not in fmt


def test_pillow_refuses_a_decompression_bomb() -> None:
    import django.conf  # noqa: F401  (settings set the limit)
    from django.conf import settings

    assert settings.configured
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, format="PNG")  # 400 Mpx in a few kilobytes
    buffer.seek(0)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(buffer).load()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["sources/1/a/original.tif", "../config/settings.py", "tiles/x.html", "tiles/x.svg"]
)
def test_media_view_serves_only_safe_derived_files(path: str, client: Client, _isolated_media: Path) -> None:
    target = _isolated_media / path.replace("../", "")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("<script>alert(1)</script>")
    assert client.get(f"/media/{path}").status_code == 404
