"""A record signed before a change of the code still verifies after it: what is signed is record.json and the
files it names, and the HTML is checked against the record's own format version, not today's template."""
import shutil
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"
OLD = "signed-before-reshape"   # a rehearsal's record, built and signed by the code of commit 0b5629d


def verify(reports: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploycheck", "verify", OLD, "--reports-dir", str(reports),
                           "--allowed-signers", str(reports / OLD / "signatures" / "rehearsal_allowed_signers"),
                           *args], capture_output=True, text=True, timeout=120)


def test_record_signed_before_the_reshape_still_verifies(tmp_path):
    shutil.copytree(DATA / OLD, tmp_path / OLD)
    checked = verify(tmp_path, "--require-all")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_old_record_with_a_changed_byte_fails(tmp_path):
    shutil.copytree(DATA / OLD, tmp_path / OLD)
    output = next((tmp_path / OLD).glob("migration-output-*.txt"))
    output.write_bytes(output.read_bytes().replace(b"[indexes]", b"[indexez]", 1))
    checked = verify(tmp_path)
    assert checked.returncode != 0 and output.name in checked.stdout + checked.stderr


def test_evidence_from_the_database_renders_as_text():
    """15.9 records a telemetry row with a date in it: any value that is not a dict or a list is text."""
    from datetime import date
    from decimal import Decimal

    from deploycheck.record.render import shape
    view = shape({"day": date(2026, 11, 30), "revenue": Decimal("12.50")})
    assert [[cell["text"] for cell in row] for row in view["rows"]] == [["day", "2026-11-30"], ["revenue", "12.50"]]
