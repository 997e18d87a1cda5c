"""Production settings: `manage.py check --deploy` is clean, and a missing SECRET_KEY is refused."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def _manage(args: list[str], env_extra: dict[str, str], var_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    env.update({"CORROBORATE_VAR_DIR": str(var_dir), **env_extra})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True
    )


def test_production_settings_pass_check_deploy(tmp_path: Path) -> None:
    result = _manage(
        ["check", "--deploy", "--fail-level", "WARNING"],
        {
            "CORROBORATE_PRODUCTION": "1",
            "SECRET_KEY": secrets.token_urlsafe(64),
            "ALLOWED_HOSTS": "corroborate.example.org",
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    result = _manage(["check"], {"CORROBORATE_PRODUCTION": "1"}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
