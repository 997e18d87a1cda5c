"""Shared fixtures: real input files, isolated media storage, and service-dependent skips that CI turns into failures."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

hypothesis_settings.register_profile(
    "corroborate", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
hypothesis_settings.load_profile("corroborate")

REPO = Path(__file__).resolve().parents[1]


def _find_shared() -> Path:
    """shared/ sits beside the checkout (CI); a clone made elsewhere finds it beside the repository it came from."""
    if os.environ.get("CORROBORATE_SHARED"):
        return Path(os.environ["CORROBORATE_SHARED"])
    beside = REPO.parent / "shared"
    if beside.is_dir():
        return beside
    try:
        import subprocess

        origin = subprocess.run(
            ["git", "config", "--get", "remote.origin.url"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and Path(origin).is_dir():
        return Path(origin).resolve().parent / "shared"
    return beside


SHARED = _find_shared()
GEOTIFF = SHARED / "media" / "geotiff"
CROWD = SHARED / "datasets" / "crowd"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# .ci/run sets this, so that a test that would skip for want of PostgreSQL, Redis or Chromium fails instead.
REQUIRE_SERVICES = os.environ.get("CORROBORATE_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (CORROBORATE_REQUIRE_SERVICES=1: CI must provide it)")
    pytest.skip(reason)


def database_vendor() -> str:
    from django.db import connection

    return connection.vendor


@pytest.fixture
def require_postgres(db: Any) -> None:
    if database_vendor() != "postgresql":
        skip_or_fail("needs PostgreSQL: set DATABASE_URL=postgres://...")


@pytest.fixture
def require_redis() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        skip_or_fail("needs Redis: set REDIS_URL=redis://...")
    return url


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(autouse=True)
def _ledger_chained_at_once_in_test_transactions(request: pytest.FixtureRequest) -> None:
    """Django's TestCase rolls its transaction back instead of committing, so on PostgreSQL ledger records,
    which are chained right after their transaction commits, would never be: in those transactions a
    trigger, created in the test's transaction and gone with it, chains each record as it is written.
    Tests with transaction=True (and live servers) commit, and are chained as in production."""
    from pytest_django.plugin import validate_django_db

    marker = request.node.get_closest_marker("django_db")
    names = request.fixturenames
    transactional = bool(marker and validate_django_db(marker)[0]) or bool(
        {"transactional_db", "live_server"} & set(names)
    )
    if transactional or (marker is None and "db" not in names):
        return
    request.getfixturevalue("db")
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE FUNCTION corroborate_test_chain_now() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN PERFORM corroborate_ledger_chain_pending(NEW.campaign_id, true); RETURN NULL; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER corroborate_test_chain_now AFTER INSERT ON verification_ledgerpending"
                " FOR EACH ROW EXECUTE FUNCTION corroborate_test_chain_now()"
            )


@pytest.fixture(autouse=True)
def _isolated_media(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test writes media under its own temporary folder, never into var/."""
    media = tmp_path_factory.mktemp("media")
    settings.MEDIA_ROOT = str(media)
    settings.CORROBORATE_RATE_LIMITS = False  # one test turns them back on
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # tests only: fast users
    # Parallel workers share one Redis in CI: each test counts its rate limits and sessions under its own prefix.
    settings.CACHES = {
        alias: {**config, "KEY_PREFIX": f"test-{uuid.uuid4().hex[:12]}"}
        for alias, config in settings.CACHES.items()
    }
    yield media  # FileSystemStorage re-reads MEDIA_ROOT when the setting changes
    shutil.rmtree(media, ignore_errors=True)


@pytest.fixture
def geotiff() -> Path:
    if not GEOTIFF.is_dir():
        pytest.fail(f"shared GeoTIFFs not found at {GEOTIFF}")
    return GEOTIFF


@pytest.fixture(scope="session")
def demo_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    from fixtures.synthetic_imagery import make_scene_pair

    folder = tmp_path_factory.mktemp("scene")
    before, after = folder / "before.tif", folder / "after.tif"
    truth = make_scene_pair(before, after, size_px=768, villages=3)
    return before, after, truth


def run_command(*args: str) -> tuple[int, dict[str, Any] | None, str]:
    """Run a management command as a researcher would: (exit code, the JSON summary line, stderr)."""
    import json
    import sys
    from io import StringIO

    from django.core.management import call_command

    out, err = StringIO(), StringIO()
    saved = sys.stderr
    sys.stderr = err
    try:
        call_command(*args, stdout=out)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.stderr = saved
    lines = out.getvalue().strip().splitlines()
    summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return code, summary, err.getvalue()
