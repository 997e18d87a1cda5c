"""The README's outside check of a package: `bagit.py --validate` and its ten-line ledger script, run as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.verification.test_packages import answered_campaign
from verification import services

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parents[2] / "README.md"
BAGIT_SCRIPT = Path(sys.executable).parent / "bagit.py"


def readme_ledger_check() -> str:
    section = README.read_text(encoding="utf-8").split("## Verifying an evidence package", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the README section has no python block"
    return match.group(1)


@pytest.fixture
def package(geotiff: Path, tmp_path: Path) -> Path:
    campaign = answered_campaign(geotiff, slug="outside")
    out = tmp_path / "package"
    services.evidence_export(campaign=campaign, out=out)
    return out


def run_readme_check(package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = readme_ledger_check()
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.setattr(sys, "argv", ["check_ledger.py", str(package)])
    exec(compile(code, "check_ledger.py", "exec"), {"__name__": "__main__"})


def test_bagit_tool_validates_the_package(package: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BAGIT_SCRIPT), "--validate", str(package)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_bagit_tool_rejects_a_changed_file(package: Path) -> None:
    (package / "data/methodology.md").write_text("rewritten")
    done = subprocess.run(
        [sys.executable, str(BAGIT_SCRIPT), "--validate", str(package)], capture_output=True, text=True
    )
    assert done.returncode != 0 and "is invalid" in done.stderr


def test_readme_ledger_check_passes_on_the_package(
    package: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_readme_check(package, monkeypatch)
    assert "ledger intact" in capsys.readouterr().out


def test_readme_ledger_check_fails_on_an_edited_entry(package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = package / "data/provenance/ledger.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    entry = json.loads(lines[2])
    entry["record"]["at"] = "2001-01-01T00:00:00+00:00"
    lines[2] = json.dumps(entry)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="entry 2 edited"):
        run_readme_check(package, monkeypatch)


def test_readme_ledger_check_fails_when_the_head_differs(
    package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = package / "bag-info.txt"
    text = info.read_text(encoding="utf-8")
    info.write_text(re.sub(r"Ledger-Head-Hash: \w+", "Ledger-Head-Hash: " + "f" * 64, text), encoding="utf-8")
    with pytest.raises(AssertionError, match="Ledger-Head-Hash"):
        run_readme_check(package, monkeypatch)
