"""The signed deployment record: built from a synthetic deployment folder, signed, tampered with, verified.

No database: the ledger is written through deploycheck.record.ledger.Ledger with entries shaped like the plugin's.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploycheck import checklist as checklist_data
from deploycheck.record import compose as rec
from deploycheck.record import render, sigfile, sign
from deploycheck.record.verify import verify
from deploycheck.__main__ import main
from deploycheck.record.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
CHECKLIST = checklist_data.load(ROOT / "checklists" / "v0.7.0.toml")
DEPLOYMENT = "v0.7.0-20250106"
HAS_SSH = shutil.which("ssh-keygen") is not None
needs_ssh = pytest.mark.skipif(not HAS_SSH, reason="ssh-keygen not installed (apt-get install openssh-client)")

DUMP = "backup/backup_v0.7.0_20250106_015500.dump"
OUTPUT = "migration-output-r2.txt"
# Files the runs make, hashed when made (4.1's dump, 7.3's runner output); write_run writes them.
MADE = {DUMP: b"PGDMP fake dump", OUTPUT: b"Applying 001_v070.sql ... done\nschema_migrations: 1 row\n"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


EVIDENCE = {
    "1.2": {"Service State": "active (running)"}, "1.3": {"Server Version": "18.6"},
    "1.4": {"Free Space": "41.2 GB", "Database Size": "312 MB"},
    "1.5": {"Python Version": "3.11.7", "asyncpg Version": "0.30.0"},
    "3.1": {"Branch": "main"}, "3.2": {"Commit": "9f1c2ab", "Previous Commit": "77e0d41"},
    "4.1": {"Backup File": DUMP, "Backup SHA-256": sha(MADE[DUMP]), "Tables": 9},
    "4.2": {"SHA-256": "ab" * 32},
    "4.5": {"Backup File": "backup_v0.7.0_20250106_015500.dump", "File Size": "48.1 MB",
            "Timestamp": "2025-01-06T01:55:00+00:00", "Location": "/backup/safe-location/"},
    "5.1": {"Users": 1234, "Products": 56, "Contents": 7890, "Orders": 4321, "Coupons": 12, "Deposits": 345},
    "5.2": {"Duplicate Contents": 3}, "5.3": {"Stock Mismatches": 2},
    "6.3": {"Delivered": 1200, "Failed": 34}, "6.4": {"Downtime Started": "2025-01-06T02:00:05+00:00"},
    "7.3": {"Exit Code": 0, "Output File": OUTPUT, "Output SHA-256": sha(MADE[OUTPUT])},
    "7.5": {"Migration Time": "41.3 s", "Status": "success"},
    "8.1": {"Constraints Count": 4}, "8.2": {"Indexes Count": 27}, "8.3": {"Audit Log Exists": True},
    "8.4": {"Row counts match pre-migration": "yes"},
    "10.5": {"Downtime Ended": "2025-01-06T02:12:35+00:00", "Total Downtime": 12.5},
    "12.1": {"Duplicates": 0}, "12.2": {"Mismatches": 0}, "12.3": {"Orphans": 0},
    "13.1": {"CPU": "3%"}, "13.2": {"RSS": "182 MB"}, "13.4": {"Bot responds within 2 seconds": "0.41 s"},
    "14.1": {"Errors": 0}, "14.2": {"Warnings": 1}, "14.3": {"Migration Status": "success"},
}


def entry(run_id: str, phases: list[str], started: str, ended: str, *, outcomes: dict | None = None,
          rehearsal: bool = False, operator: str = "rina", extra_items: dict | None = None) -> dict:
    """A ledger entry shaped like the plugin's, with every item of `phases` (outcome passed unless told)."""
    outcomes = outcomes or {}
    items = {}
    for item in CHECKLIST.ordered():
        if item.phase not in phases:
            continue
        outcome = outcomes.get(item.id, "passed")
        attestation = None
        evidence = dict(EVIDENCE.get(item.id, {}))
        if item.kind == "manual" and outcome == "passed":
            attestation = {"text": f"done: {item.title}", "by": operator, "at": started}
            evidence.update({"Attestation": attestation["text"], "Attested By": operator, "Attested At": started})
        items[item.id] = {"title": item.title, "phase": item.phase, "kind": item.kind, "gate": item.gate,
                          "outcome": outcome, "duration": 0.25, "evidence": evidence, "attestation": attestation,
                          "message": "expected 4+ constraints, found 2" if outcome == "failed" else None,
                          "cases": {f"tests/{item.phase}/test_x.py::test_{item.id.replace('.', '_')}": outcome}}
    items.update(extra_items or {})
    failed = [i for i, r in items.items() if r["outcome"] in ("failed", "error")]
    label = "+".join(phases) if len(phases) < 3 else "all"
    return {"run_id": run_id, "deployment_id": DEPLOYMENT, "release": "0.7.0", "phases": phases, "operator": operator,
            "host": "prod-1", "target": {"kind": "embedded" if rehearsal else "live",
                                         "dsn": "postgresql://postgres:***@localhost:5432/bot_auto_order",
                                         "server_version": "18.6", "rehearsal": rehearsal},
            "bot_commit": "9f1c2ab0d4e5f60718293a4b5c6d7e8f90a1b2c3", "started": started, "ended": ended,
            "verdict": "NO-GO" if failed else "GO", "failed_gates": sorted({items[i]["gate"] for i in failed
                                                                             if items[i]["gate"]}),
            "failed_items": failed, "reports": {"html": f"{label}-{run_id}.html", "json": f"{label}-{run_id}.json"},
            "items": items}


def write_run(folder: Path, run: dict) -> None:
    for name in run["reports"].values():
        (folder / name).write_text(f"<html>report of run {run['run_id']}: {run['verdict']}</html>\n")
    for result in run["items"].values():
        for name in (v for k, v in result["evidence"].items() if k.endswith(" File") and v in MADE):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(MADE[name])
    Ledger(folder / "ledger.jsonl").append(run)


def standard_runs() -> list[dict]:
    preflight = entry("r1", ["preflight"], "2025-01-05T14:00:00+00:00", "2025-01-05T14:06:10+00:00")
    preflight["items"]["2.4"]["attestation"]["text"] = "Primary: Rina, Backup: Agus"
    return [preflight,
            entry("r2", ["deploy"], "2025-01-06T02:00:00+00:00", "2025-01-06T02:13:00+00:00"),
            entry("r3", ["postdeploy"], "2025-01-06T02:14:00+00:00", "2025-01-06T02:16:30+00:00"),
            entry("r4", ["smoke"], "2025-01-06T02:17:00+00:00", "2025-01-06T02:21:45+00:00")]


@pytest.fixture
def reports(tmp_path) -> Path:
    """reports/<id>/ with preflight, deploy, postdeploy and smoke runs, their reports and the backup metadata."""
    folder = tmp_path / "reports" / DEPLOYMENT
    (folder / "backup").mkdir(parents=True)
    (folder / "backup" / "backup.json").write_text(json.dumps({
        "file": "backup_v0.7.0_20250106_015500.dump", "sha256": "ab" * 32, "size": 15,
        "timestamp": "2025-01-06T01:55:00+00:00", "location": "/backup/safe-location/",
        "copies": ["/backup/safe-location/backup_v0.7.0_20250106_015500.dump"]}, indent=2))
    for run in standard_runs():
        write_run(folder, run)
    return tmp_path / "reports"


def build(reports: Path) -> Path:
    return rec.build_record(reports, DEPLOYMENT, CHECKLIST)


def ssh_key(tmp_path: Path, name: str, comment: str) -> Path:
    key = tmp_path / "keys" / name
    key.parent.mkdir(exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], check=True)
    return key


def pem_key(tmp_path: Path, name: str) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = tmp_path / "keys" / name
    key.parent.mkdir(exist_ok=True)
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return key


def allowed_signers(tmp_path: Path, keys: dict[str, Path]) -> Path:
    from cryptography.hazmat.primitives import serialization
    lines = []
    for identity, key in keys.items():
        if key.with_suffix(".pub").exists():
            public = " ".join(key.with_suffix(".pub").read_text().split()[:2])
        else:
            private = serialization.load_pem_private_key(key.read_bytes(), password=None)
            public = sign.openssh_public(private.public_key())
        lines.append(f'{identity} namespaces="deploycheck" {public}')
    path = tmp_path / "allowed_signers"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def signed(reports, tmp_path):
    """A built record signed by three people: alice (ssh key), bob and carol (raw Ed25519 PEM)."""
    build(reports)
    keys = {"bob@ops": pem_key(tmp_path, "bob.pem"), "carol@ops": pem_key(tmp_path, "carol.pem")}
    if HAS_SSH:
        keys["alice@ops"] = ssh_key(tmp_path, "alice", "alice@ops")
        sign.sign(reports, DEPLOYMENT, "deployed-by", keys["alice@ops"])  # identity from the key comment
    else:
        keys["alice@ops"] = pem_key(tmp_path, "alice.pem")
        sign.sign(reports, DEPLOYMENT, "deployed-by", keys["alice@ops"], "alice@ops")
    sign.sign(reports, DEPLOYMENT, "verified-by", keys["bob@ops"], "bob@ops")
    sign.sign(reports, DEPLOYMENT, "approved-by", keys["carol@ops"], "carol@ops")
    return reports, allowed_signers(tmp_path, keys)


def flip_byte(path: Path, at: str = "middle") -> None:
    """Change one byte: a letter or digit near the middle (or in the last line) becomes another of its kind."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2 if at == "middle" else data.rstrip(b"\n").rfind(b"\n") + 1 + 20
    for n in range(start, len(data)):
        c = chr(data[n])
        if c.isdigit() or c.isalpha():
            data[n] = ord("1" if c == "0" else "0") if c.isdigit() else ord("b" if c == "a" else "a")
            path.write_bytes(bytes(data))
            return
    raise AssertionError(f"nothing to flip in {path}")


# ------------------------------------------------------------------ the record

def test_record_has_every_item_and_the_post_deployment_report(reports):
    path = build(reports)
    record = json.loads(path.read_text())
    assert [i["id"] for i in record["items"]] == [i.id for i in CHECKLIST.ordered()]
    items = {i["id"]: i for i in record["items"]}
    assert items["5.1"]["blanks"][0] == {"name": "Users", "value": 1234, "source": "evidence"}
    assert items["5.1"]["operator"] == "rina"
    # a manual item's blanks come from its attestation ("Primary: Rina, Backup: Agus")
    assert items["2.4"]["blanks"] == [{"name": "Primary", "value": "Rina", "source": "attestation"},
                                      {"name": "Backup", "value": "Agus", "source": "attestation"}]
    assert items["2.3"]["blanks"] == [{"name": "Maintenance Message", "value": None, "source": None}]
    assert items["5.1"]["run_id"] == "r1" and items["5.1"]["ended"] == "2025-01-05T14:06:10+00:00"
    assert items["2.2"]["attestation"]["by"] == "rina"
    assert items["16.2"]["outcome"] == "not run" and items["15.1"]["outcome"] == "not run"
    summary = {f["field"]: f["value"] for f in record["report"]["summary"]}
    assert summary == {"Deployment Date": "2025-01-06", "Start Time": "2025-01-06T02:00:00+00:00",
                       "End Time": "2025-01-06T02:21:45+00:00", "Total Duration": 21.8, "Downtime": 12.5,
                       "Status": "Success"}
    migration = {f["field"]: f["value"] for f in record["report"]["migration"]}
    assert migration == {"Row Counts Match": "yes", "Constraints Applied": 4, "Indexes Created": 27,
                         "Data Integrity": "Pass", "Performance": "Normal"}
    assert {f["field"]: f["value"] for f in record["report"]["smoke"]} == dict.fromkeys(
        ["Bot Responding", "Product Listing", "Product Creation", "Content Addition", "Voucher System", "Order Flow"],
        "passed")
    final = {f["line"]: f["done"] for f in record["final_checklist"]}
    assert final["All critical smoke tests passed"] == "yes" and final["Monitoring active"] is None
    assert final["Team notified of completion"] is None  # nobody attested it: not filled, never guessed
    assert record["final_status"] == "In Progress"
    assert [r["slug"] for r in record["signoff"]] == ["deployed-by", "verified-by", "approved-by"]
    files = {f["path"] for f in record["files"]}
    assert {"ledger.jsonl", "checklist.toml", "backup/backup.json", "preflight-r1.html", "smoke-r4.json", OUTPUT,
            DUMP} <= files
    assert record["backup"]["file"] == "backup_v0.7.0_20250106_015500.dump"
    page = path.with_name("record.html").read_text()
    assert "Post-Deployment Report" in page and "Final Checklist" in page and "Team Sign-Off" in page
    assert "12.5 minutes" in page and "21.8 minutes" in page and "unsigned" in page


def test_missing_values_show_as_not_filled(tmp_path):
    folder = tmp_path / "reports" / DEPLOYMENT
    folder.mkdir(parents=True)
    write_run(folder, entry("r1", ["preflight"], "2025-01-05T14:00:00+00:00", "2025-01-05T14:06:10+00:00"))
    record = json.loads(build(tmp_path / "reports").read_text())
    summary = {f["field"]: f for f in record["report"]["summary"]}
    assert summary["Downtime"]["value"] is None and summary["Status"]["value"] is None
    assert "no deploy run" in summary["Status"]["note"]
    assert all(f["value"] is None for f in record["report"]["migration"] + record["report"]["issues"])
    assert "backup/backup.json" not in {f["path"] for f in record["files"]}
    page = (folder / "record.html").read_text()
    assert page.count(rec.NOT_FILLED) > 20


def test_failed_and_rolled_back_status_and_issues_from_attestation(reports):
    folder = reports / DEPLOYMENT
    write_run(folder, entry("r5", ["postdeploy"], "2025-01-06T02:30:00+00:00", "2025-01-06T02:31:00+00:00",
                            outcomes={"8.1": "failed"}))
    record = json.loads(build(reports).read_text())
    status = next(f for f in record["report"]["summary"] if f["field"] == "Status")
    assert status["value"] == "Failed" and "8.1" in status["note"]
    assert record["report"]["failures"] == [{"item": "8.1", "run_id": "r5", "message": "expected 4+ constraints, found 2"}]
    rollback = entry("r6", ["rollback"], "2025-01-06T02:40:00+00:00", "2025-01-06T02:52:00+00:00")
    rollback["items"]["16.7"]["attestation"]["text"] = ("Issues Encountered: constraint check_used_count_le_max_uses "
                                                        "missing; Resolutions Applied: restored the 01:55 backup")
    write_run(folder, rollback)
    record = json.loads(rec.build_record(reports, DEPLOYMENT, CHECKLIST).read_text())
    assert next(f for f in record["report"]["summary"] if f["field"] == "Status")["value"] == "Rolled Back"
    assert record["final_status"] == "Rolled Back"
    issues = {f["field"]: f["value"] for f in record["report"]["issues"]}
    assert issues == {"Issues Encountered": "constraint check_used_count_le_max_uses missing",
                      "Resolutions Applied": "restored the 01:55 backup"}


def test_latest_run_wins_and_attempts_are_kept(reports):
    folder = reports / DEPLOYMENT
    write_run(folder, entry("r5", ["smoke"], "2025-01-06T03:00:00+00:00", "2025-01-06T03:04:00+00:00",
                            outcomes={"11.5": "failed"}))
    write_run(folder, entry("r6", ["smoke"], "2025-01-06T03:10:00+00:00", "2025-01-06T03:14:00+00:00",
                            outcomes={"11.5": "skipped"}))
    items = {i["id"]: i for i in json.loads(build(reports).read_text())["items"]}
    # a later skip does not hide the failure: the latest run that ran the item counts
    assert items["11.5"]["outcome"] == "failed" and items["11.5"]["run_id"] == "r5"
    assert [a["outcome"] for a in items["11.5"]["attempts"]] == ["passed", "failed", "skipped"]


def test_built_twice_is_byte_identical_even_in_a_copied_folder(reports, tmp_path):
    build(reports)
    names = ("record.json", "record.html", "record.intoto.json")
    first = {n: (reports / DEPLOYMENT / n).read_bytes() for n in names}
    build(reports)
    assert {n: (reports / DEPLOYMENT / n).read_bytes() for n in names} == first
    elsewhere = tmp_path / "elsewhere" / "reports"
    shutil.copytree(reports, elsewhere)
    for n in names:
        (elsewhere / DEPLOYMENT / n).unlink()
    rec.build_record(elsewhere, DEPLOYMENT, CHECKLIST)
    assert {n: (elsewhere / DEPLOYMENT / n).read_bytes() for n in names} == first


def test_no_secret_reaches_the_record(reports, monkeypatch):
    monkeypatch.setenv("POSTGRES_PASSWORD", "s3cr3t-pw")
    folder = reports / DEPLOYMENT
    run = entry("r5", ["postdeploy"], "2025-01-06T03:00:00+00:00", "2025-01-06T03:01:00+00:00")
    run["items"]["14.1"]["evidence"]["Errors"] = "connect postgresql://postgres:s3cr3t-pw@db/bot failed"
    run["items"]["14.2"]["evidence"]["Warnings"] = "token 123456789:AAEhBOweik9ad9r_Qt5WBmNqLpQ0aAbCdEf leaked"
    write_run(folder, run)
    build(reports)
    for name in ("record.json", "record.html", "record.intoto.json"):
        text = (folder / name).read_text()
        assert "s3cr3t-pw" not in text and "AAEhBOweik9ad9r" not in text


def test_in_toto_statement(reports):
    build(reports)
    folder = reports / DEPLOYMENT
    statement = json.loads((folder / "record.intoto.json").read_text())
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1"
    assert statement["subject"][0] == {"name": "record.json",
                                       "digest": {"sha256": rec.sha256_bytes((folder / "record.json").read_bytes())}}
    assert {"name": "bot-auto-order", "digest": {"gitCommit": "9f1c2ab0d4e5f60718293a4b5c6d7e8f90a1b2c3"}} \
        in statement["subject"]
    predicate = statement["predicate"]
    assert predicate["result"] == "PASSED" and predicate["failedTests"] == []
    assert "8.2 Check indexes created" in predicate["passedTests"]
    assert predicate["configuration"][0]["name"] == "checklist.toml"
    write_run(folder, entry("r5", ["smoke"], "2025-01-06T03:00:00+00:00", "2025-01-06T03:01:00+00:00",
                            outcomes={"11.6": "failed"}))
    build(reports)
    predicate = json.loads((folder / "record.intoto.json").read_text())["predicate"]
    assert predicate["result"] == "FAILED" and predicate["failedTests"] == ["11.6 Test order flow (if possible)"]


# ------------------------------------------------------------------ signing and verifying

def test_ssh_and_ed25519_sign_and_verify(signed):
    reports, allowed = signed
    check = verify(reports, DEPLOYMENT)
    assert check.ok, check.problems
    assert check.unsigned == []
    assert {role: v[0] for role, v in check.signed.items()} == {
        "Deployed By": "alice@ops", "Verified By": "bob@ops", "Approved By": "carol@ops"}
    assert all("NOT checked" in v[2] for v in check.signed.values())
    trusted = verify(reports, DEPLOYMENT, allowed)
    assert trusted.ok, trusted.problems
    assert all(v[2].startswith("trusted") for v in trusted.signed.values())
    sig = json.loads((reports / DEPLOYMENT / "signatures" / "deployed-by.json").read_text())
    assert sig["key_type"] == ("ssh" if HAS_SSH else "ed25519-pem")
    assert sig["record_sha256"] == rec.record_digest(json.loads((reports / DEPLOYMENT / "record.json").read_text()))
    assert sig["key_fingerprint"].startswith("SHA256:") and sig["signed_at"]
    page = (reports / DEPLOYMENT / "record.html").read_text()
    assert "alice@ops" in page and "carol@ops" in page and "unsigned" not in page


def test_signer_not_in_allowed_signers_fails(signed, tmp_path):
    reports, allowed = signed
    lines = [ln for ln in allowed.read_text().splitlines() if not ln.startswith("bob@ops")]
    allowed.write_text("\n".join(lines) + "\n")
    check = verify(reports, DEPLOYMENT, allowed)
    assert not check.ok and check.first_bad_file == "signatures/verified-by.json"


@needs_ssh
def test_ssh_signature_verifies_by_hand_with_ssh_keygen(signed, tmp_path):
    """The documented manual check: the stored payload and signature, ssh-keygen -Y verify."""
    reports, allowed = signed
    sig = json.loads((reports / DEPLOYMENT / "signatures" / "deployed-by.json").read_text())
    (tmp_path / "payload.sig").write_text(sig["signature"])
    out = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", sig["signer"], "-n", "deploycheck",
                          "-s", str(tmp_path / "payload.sig")], input=sig["payload"].encode(), capture_output=True)
    assert out.returncode == 0, out.stderr


def test_missing_role_is_reported_unsigned(reports, tmp_path, capsys):
    build(reports)
    sign.sign(reports, DEPLOYMENT, "deployed-by", pem_key(tmp_path, "alice.pem"), "alice@ops")
    check = verify(reports, DEPLOYMENT)
    assert check.ok and check.unsigned == ["Verified By", "Approved By"]
    assert main(["verify", DEPLOYMENT, "--reports-dir", str(reports)]) == 0
    out = capsys.readouterr().out
    assert "Verified By  unsigned" in out and "Approved By  unsigned" in out and "alice@ops" in out
    assert main(["verify", DEPLOYMENT, "--reports-dir", str(reports), "--require-all"]) == 1


def test_same_identity_as_deployer_and_approver_is_refused(reports, tmp_path, capsys):
    build(reports)
    alice = pem_key(tmp_path, "alice.pem")
    sign.sign(reports, DEPLOYMENT, "deployed-by", alice, "alice@ops")
    with pytest.raises(sigfile.RefusedError, match="different person"):
        sign.sign(reports, DEPLOYMENT, "approved-by", pem_key(tmp_path, "other.pem"), "Alice@ops")
    with pytest.raises(sigfile.RefusedError, match="same key"):  # the same key under another name
        sign.sign(reports, DEPLOYMENT, "approved-by", alice, "mallory@ops")
    code = main(["sign", DEPLOYMENT, "--reports-dir", str(reports), "--role", "approved-by", "--key",
                 str(pem_key(tmp_path, "third.pem")), "--identity", "alice@ops"])
    assert code == 4 and "refused" in capsys.readouterr().err
    assert not (reports / DEPLOYMENT / "signatures" / "approved-by.json").exists()
    # verifying role may be the deployer; only the approver must differ
    sign.sign(reports, DEPLOYMENT, "verified-by", alice, "alice@ops")


@pytest.mark.parametrize("role", ["deployed-by", "verified-by"])  # an ssh and a raw Ed25519 signature
def test_any_edited_field_of_a_signature_is_caught(signed, role):
    """Each field is either signed or derived from the signature: editing any one of them is noticed."""
    reports, _ = signed
    path = reports / DEPLOYMENT / "signatures" / f"{role}.json"
    original = path.read_bytes()
    for name in sigfile.FIELDS:
        sig = json.loads(original)
        value = sig[name]
        n = next(i for i in range(len(value) // 2, len(value)) if value[i].isalnum())
        sig[name] = value[:n] + ("0" if value[n] != "0" else "1") + value[n + 1:]
        path.write_bytes(sigfile.render_signature(sig))  # written in the proper form: only the content differs
        check = verify(reports, DEPLOYMENT)
        assert not check.ok and check.first_bad_file == f"signatures/{role}.json", name
    path.write_bytes(original)
    assert verify(reports, DEPLOYMENT).ok


def test_forged_approver_file_is_caught_by_verify(signed):
    """Copying the deployer's signature over the approver's: role mismatch, named."""
    reports, _ = signed
    sigs = reports / DEPLOYMENT / "signatures"
    shutil.copyfile(sigs / "deployed-by.json", sigs / "approved-by.json")
    check = verify(reports, DEPLOYMENT)
    assert not check.ok and check.first_bad_file == "signatures/approved-by.json"


TAMPER = ["preflight-r1.html", "smoke-r4.json", "ledger.jsonl", "backup/backup.json", "checklist.toml", OUTPUT, DUMP,
          "record.json", "record.intoto.json", "record.html", "signatures/deployed-by.json",
          "signatures/approved-by.json"]


@pytest.mark.parametrize("name", TAMPER)
def test_one_changed_byte_fails_verify_and_names_the_file(signed, name, capsys):
    reports, allowed = signed
    assert verify(reports, DEPLOYMENT, allowed).ok
    flip_byte(reports / DEPLOYMENT / name)
    check = verify(reports, DEPLOYMENT, allowed)
    assert not check.ok and check.first_bad_file == name, check.problems
    assert main(["verify", DEPLOYMENT, "--reports-dir", str(reports)]) == 1
    assert f"FAILED: {name} does not match" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["ledger.jsonl", "record.json", "signatures/verified-by.json"])
def test_whitespace_or_last_line_changes_are_caught_too(signed, name):
    reports, _ = signed
    path = reports / DEPLOYMENT / name
    if name == "ledger.jsonl":
        flip_byte(path, at="last line")  # no later line's hash chain covers it; the record's digest does
    else:
        path.write_bytes(path.read_bytes().replace(b"\n", b"\n ", 1))
    check = verify(reports, DEPLOYMENT)
    assert not check.ok and check.first_bad_file == name, check.problems


@pytest.mark.parametrize("listed", ["ledger.jsonl", "smoke-r4.html"])
def test_a_changed_hash_inside_a_signed_record_names_the_record_not_the_file(signed, listed):
    reports, _ = signed
    path = reports / DEPLOYMENT / "record.json"
    record = json.loads(path.read_text())
    entry = next(f for f in record["files"] if f["path"] == listed)
    entry["sha256"] = ("0" if entry["sha256"][0] != "0" else "1") + entry["sha256"][1:]
    path.write_bytes(rec.render_json(record))
    check = verify(reports, DEPLOYMENT)
    assert not check.ok and check.first_bad_file == "record.json", check.problems


def test_runner_output_changed_before_the_record_was_built_is_caught(reports, capsys):
    """The record lists the hash 7.3 took when it wrote the output, not one taken when the record is built."""
    flip_byte(reports / DEPLOYMENT / OUTPUT)
    record = json.loads(build(reports).read_text())
    listed = next(f for f in record["files"] if f["path"] == OUTPUT)
    assert listed["sha256"] == sha(MADE[OUTPUT]) and listed["made_by"] == "7.3 in run r2"
    check = verify(reports, DEPLOYMENT)
    assert not check.ok and check.first_bad_file == OUTPUT and "changed since it was made" in check.problems[0][1]
    assert main(["verify", DEPLOYMENT, "--reports-dir", str(reports)]) == 1
    assert f"FAILED: {OUTPUT} does not match" in capsys.readouterr().err


def offsite_backup(tmp_path: Path, *, copy: bool) -> tuple[Path, Path]:
    """A deployment whose dump and backup.json are under --backup-dir, outside the folder; with a 4.4 copy."""
    reports, backup_dir = tmp_path / "reports", tmp_path / "var-backups"
    folder = reports / DEPLOYMENT
    folder.mkdir(parents=True)
    backup_dir.mkdir()
    dump = backup_dir / "backup_v0.7.0_20250106_015500.dump"
    dump.write_bytes(b"PGDMP dump outside the folder")
    (backup_dir / "backup.json").write_text(json.dumps({"file": str(dump), "sha256": sha(dump.read_bytes())}))
    run = entry("r1", ["preflight"], "2025-01-05T14:00:00+00:00", "2025-01-05T14:06:10+00:00")
    run["items"]["4.1"]["evidence"].update({"Backup File": str(dump), "Backup SHA-256": sha(dump.read_bytes())})
    if copy:
        safe = tmp_path / "mnt-backups" / dump.name
        safe.parent.mkdir()
        shutil.copyfile(dump, safe)
        run["items"]["4.4"]["evidence"].update({"Copy": str(safe), "Copy SHA-256": sha(safe.read_bytes())})
    write_run(folder, run)
    rec.build_record(reports, DEPLOYMENT, CHECKLIST)
    return reports, dump


def test_a_dump_outside_the_folder_is_listed_by_path_and_verified(tmp_path, capsys):
    reports, dump = offsite_backup(tmp_path, copy=False)
    record = json.loads((reports / DEPLOYMENT / "record.json").read_text())
    listed = next(f for f in record["files"] if f["path"] == str(dump))
    assert listed["sha256"] == sha(dump.read_bytes()) and listed["made_by"] == "4.1 in run r1"
    # backup.json is kept in the folder (as the checklist is), so the record shows it and covers it
    assert "backup/backup.json" in {f["path"] for f in record["files"]} and record["backup"]["file"] == str(dump)
    assert verify(reports, DEPLOYMENT).ok
    flip_byte(dump)
    check = verify(reports, DEPLOYMENT)
    assert not check.ok and check.first_bad_file == str(dump) and "changed since" in check.problems[0][1]
    dump.unlink()
    check = verify(reports, DEPLOYMENT)
    assert not check.ok and check.first_bad_file == str(dump) and str(dump) in check.missing
    assert main(["verify", DEPLOYMENT, "--reports-dir", str(reports)]) == 1  # never a traceback
    out, err = capsys.readouterr()
    assert f"FAILED: {dump} is missing" in err
    assert f"MISSING {dump}: not found" in out and f"sha256sum FILE` must print {sha(b'PGDMP dump outside the folder')}" in out


def test_a_dump_moved_off_site_is_checked_at_its_safe_copy(tmp_path, capsys):
    reports, dump = offsite_backup(tmp_path, copy=True)
    safe = tmp_path / "mnt-backups" / dump.name
    listed = next(f for f in json.loads((reports / DEPLOYMENT / "record.json").read_text())["files"]
                  if f["path"] == str(dump))
    assert listed["copies"] == [str(safe)]
    dump.unlink()
    check = verify(reports, DEPLOYMENT)
    assert check.ok and any(f"checked its copy {safe} instead" in n for n in check.notes), check.problems
    flip_byte(safe)
    check = verify(reports, DEPLOYMENT)
    assert not check.ok and check.first_bad_file == str(dump) and "copy is damaged" in check.problems[0][1]
    safe.unlink()
    assert main(["verify", DEPLOYMENT, "--reports-dir", str(reports)]) == 1
    out, err = capsys.readouterr()
    assert "is missing" in err and f"nor are its copies ({safe})" in out  # names the copy to check instead


def test_a_dump_in_the_folder_moved_away_is_checked_at_its_copy(tmp_path, capsys):
    reports = tmp_path / "reports"
    folder = reports / DEPLOYMENT
    folder.mkdir(parents=True)
    safe = tmp_path / "mnt-backups" / Path(DUMP).name
    safe.parent.mkdir()
    safe.write_bytes(MADE[DUMP])
    run = entry("r1", ["preflight"], "2025-01-05T14:00:00+00:00", "2025-01-05T14:06:10+00:00")
    run["items"]["4.4"]["evidence"].update({"Copy": str(safe), "Copy SHA-256": sha(MADE[DUMP])})
    write_run(folder, run)
    rec.build_record(reports, DEPLOYMENT, CHECKLIST)
    (folder / DUMP).unlink()  # moved off-site after the record was built
    check = verify(reports, DEPLOYMENT)
    assert check.ok and any(f"{DUMP} is not at" in n and str(safe) in n for n in check.notes), check.problems
    safe.unlink()
    assert main(["verify", DEPLOYMENT, "--reports-dir", str(reports)]) == 1
    assert f"FAILED: {DUMP} is missing" in capsys.readouterr().err


def test_held_back_item_is_not_a_pass(reports):
    folder = reports / DEPLOYMENT
    run = entry("r5", ["deploy"], "2025-01-06T03:00:00+00:00", "2025-01-06T03:02:00+00:00",
                outcomes={"7.2": "failed", "7.3": "not run", "7.4": "not run", "7.5": "not run"})
    for item_id in ("7.3", "7.4", "7.5"):
        run["items"][item_id]["message"] = "not run: 7.2 failed"
    write_run(folder, run)
    record = json.loads(build(reports).read_text())
    items = {i["id"]: i for i in record["items"]}
    # an earlier pass of 7.3 (run r2) still stands: a held-back run does not hide what ran
    assert items["7.3"]["outcome"] == "passed" and [a["outcome"] for a in items["7.3"]["attempts"]] == ["passed", "not run"]
    write_run(folder, entry("r6", ["rollback"], "2025-01-06T03:10:00+00:00", "2025-01-06T03:12:00+00:00",
                            outcomes={"16.2": "failed", "16.3": "not run", "16.4": "not run"}))
    record = json.loads(build(reports).read_text())
    items = {i["id"]: i for i in record["items"]}
    assert items["16.3"]["outcome"] == "not run" and items["16.3"]["run_id"] == "r6"
    verdict = record["verdict"]
    assert verdict["verdict"] == "NO-GO" and verdict["not_run"] == ["16.3", "16.4"]
    assert verdict["failed"] == ["7.2", "16.2"] and "not run: 16.3, 16.4" in verdict["line"]
    predicate = json.loads((folder / "record.intoto.json").read_text())["predicate"]
    assert [t.split()[0] for t in predicate["failedTests"]] == ["7.2", "16.2", "16.3", "16.4"]
    page = (folder / "record.html").read_text()
    assert "Verdict:</b> NO-GO" in page and 'class="o not-run">not run' in page


def test_incomplete_rehearsal_is_signed_but_says_no_go(tmp_path):
    """The plugin's rehearsal path after Ctrl-C: build (force), sign with throwaway keys, verify."""
    reports = tmp_path / "reports"
    folder = reports / DEPLOYMENT
    folder.mkdir(parents=True)
    phases = ["preflight", "deploy", "postdeploy", "smoke", "monitor", "rollback"]
    late = [i.id for i in CHECKLIST.ordered() if i.phase in ("monitor", "rollback")]
    run = entry("r1", phases, "2025-01-06T02:00:00+00:00", "2025-01-06T02:09:00+00:00", rehearsal=True,
                outcomes=dict.fromkeys(late, "not run"))
    for item_id in late:
        run["items"][item_id]["message"] = "not run: interrupted"
    run["incomplete"] = "interrupted (KeyboardInterrupt) after 51 of 77 items"
    run["verdict"] = "NO-GO"
    write_run(folder, run)
    rec.build_record(reports, DEPLOYMENT, CHECKLIST, force=True)
    sign.sign_with_throwaway_keys(reports, DEPLOYMENT)
    check = verify(reports, DEPLOYMENT)
    assert check.ok and not check.unsigned, check.problems
    record = json.loads((folder / "record.json").read_text())
    assert record["verdict"]["verdict"] == "NO-GO"
    assert record["verdict"]["line"].startswith("NO-GO (incomplete: interrupted (KeyboardInterrupt) after 51 of 77")
    status = next(f for f in record["report"]["summary"] if f["field"] == "Status")
    assert status["value"] == "Incomplete" and record["final_status"] == "Incomplete"
    assert json.loads((folder / "record.intoto.json").read_text())["predicate"]["result"] == "FAILED"
    page = (folder / "record.html").read_text()
    assert "incomplete: interrupted (KeyboardInterrupt)" in page and "Success" not in page
    # run again in full: the incomplete run is superseded, the record can reach GO
    write_run(folder, entry("r2", phases, "2025-01-06T03:00:00+00:00", "2025-01-06T03:09:00+00:00", rehearsal=True))
    record = json.loads(rec.build_record(reports, DEPLOYMENT, CHECKLIST, force=True).read_text())
    assert record["verdict"] == {"verdict": "GO", "line": "GO", "failed": [], "not_run": [], "incomplete": [],
                                 "overrides": []}
    assert next(f for f in record["report"]["summary"] if f["field"] == "Status")["value"] != "Incomplete"


def test_override_is_shown_and_signed(reports, tmp_path):
    folder = reports / DEPLOYMENT
    run = entry("r5", ["deploy"], "2025-01-06T03:00:00+00:00", "2025-01-06T03:13:00+00:00")
    # the plugin's shape: what it overrode, as it told the operator
    run["override"] = {"reason": "4.3 failed on the scratch server's disk; restore tested by hand on staging",
                       "by": "rina", "at": "2025-01-06T02:59:00+00:00",
                       "overridden": ["preflight is NO-GO (failed: 4.3)"]}
    write_run(folder, run)
    build(reports)
    record = json.loads((folder / "record.json").read_text())
    assert record["verdict"]["overrides"] == [{"run_id": "r5", **run["override"]}]
    assert record["runs"][-1]["override"] == run["override"]
    assert "override by rina at 2025-01-06T02:59:00+00:00: 4.3 failed" in record["verdict"]["line"]
    page = (folder / "record.html").read_text()
    assert "<h2>Overrides</h2>" in page and "restore tested by hand on staging" in page
    assert "preflight is NO-GO (failed: 4.3)" in page
    sign.sign(reports, DEPLOYMENT, "deployed-by", pem_key(tmp_path, "alice.pem"), "alice@ops")
    assert verify(reports, DEPLOYMENT).ok
    # the reason is part of what is signed: an edited reason no longer matches the signature
    record["verdict"]["overrides"][0]["reason"] = "no reason"
    (folder / "record.json").write_bytes(rec.render_json(record))
    check = verify(reports, DEPLOYMENT)
    assert not check.ok and check.first_bad_file == "record.json" and "changed after it was signed" in check.problems[0][1]


def test_later_runs_do_not_break_the_record_but_rebuilding_a_signed_record_is_refused(signed, capsys):
    reports, _ = signed
    write_run(reports / DEPLOYMENT, entry("r5", ["monitor"], "2025-01-06T03:21:00+00:00", "2025-01-06T03:25:00+00:00"))
    check = verify(reports, DEPLOYMENT)
    assert check.ok and any("1 run(s) appended" in n for n in check.notes)
    assert main(["record", DEPLOYMENT, "--reports-dir", str(reports), "--checklist", str(CHECKLIST.path)]) == 4
    assert "pass --force" in capsys.readouterr().err
    assert main(["record", DEPLOYMENT, "--reports-dir", str(reports), "--checklist", str(CHECKLIST.path),
                 "--force"]) == 0
    assert len(list((reports / DEPLOYMENT / "signatures" / "superseded").glob("*.json"))) == 3
    check = verify(reports, DEPLOYMENT)
    assert check.ok and len(check.unsigned) == 3
    record = json.loads((reports / DEPLOYMENT / "record.json").read_text())
    assert {f["line"]: f["done"] for f in record["final_checklist"]}["Monitoring active"] == "yes"


def test_verify_works_on_a_copy_elsewhere(signed, tmp_path):
    reports, allowed = signed
    copy = tmp_path / "auditor" / "incoming"
    shutil.copytree(reports / DEPLOYMENT, copy / DEPLOYMENT)
    shutil.rmtree(reports)
    check = verify(copy, DEPLOYMENT, allowed)
    assert check.ok, check.problems


def test_rehearsal_signs_with_throwaway_keys(tmp_path):
    folder = tmp_path / "reports" / DEPLOYMENT
    folder.mkdir(parents=True)
    write_run(folder, entry("r1", ["preflight", "deploy", "postdeploy", "smoke", "monitor", "rollback"],
                            "2025-01-06T02:00:00+00:00", "2025-01-06T02:09:00+00:00", rehearsal=True))
    rec.build_record(tmp_path / "reports", DEPLOYMENT, CHECKLIST)
    paths = sign.sign_with_throwaway_keys(tmp_path / "reports", DEPLOYMENT)
    assert [p.name for p in paths] == ["deployed-by.json", "verified-by.json", "approved-by.json"]
    signers = {json.loads(p.read_text())["signer"] for p in paths}
    assert len(signers) == 3
    if HAS_SSH:
        assert json.loads(paths[0].read_text())["key_type"] == "ssh"
    check = verify(tmp_path / "reports", DEPLOYMENT, folder / "signatures" / "rehearsal_allowed_signers")
    assert check.ok and not check.unsigned
    assert main(["rehearsal-sign", DEPLOYMENT, "--reports-dir", str(tmp_path / "reports")]) == 0


def test_rehearsal_keys_refuse_a_live_deployment(reports):
    build(reports)
    with pytest.raises(sigfile.RefusedError, match="live target"):
        sign.sign_with_throwaway_keys(reports, DEPLOYMENT)


# ------------------------------------------------------------------ the command line

def test_cli_exit_codes(reports, tmp_path, capsys):
    args = ["--reports-dir", str(reports)]
    assert main(["record", DEPLOYMENT, *args, "--checklist", str(CHECKLIST.path)]) == 0
    assert "record SHA-256" in capsys.readouterr().out
    assert main(["verify", DEPLOYMENT, *args]) == 0
    assert "NOT against who may sign" in capsys.readouterr().out
    assert main(["verify", "no-such-deployment", *args]) == 3
    assert "no deployment folder" in capsys.readouterr().err
    assert main(["record", "x", "--reports-dir", str(tmp_path / "nowhere"), "--checklist", str(CHECKLIST.path)]) == 3
    not_a_key = tmp_path / "key.txt"
    not_a_key.write_text("hello\n")
    assert main(["sign", DEPLOYMENT, *args, "--role", "deployed-by", "--key", str(not_a_key)]) == 3
    assert "not a key deploycheck can use" in capsys.readouterr().err
    assert main(["sign", DEPLOYMENT, *args, "--role", "deployed-by", "--key", str(tmp_path / "missing")]) == 3
    key = pem_key(tmp_path, "alice.pem")
    assert main(["sign", DEPLOYMENT, *args, "--role", "deployed-by", "--key", str(key), "--identity", "a@x"]) == 0
    assert main(["sign", DEPLOYMENT, *args, "--role", "deployed-by", "--key", str(key), "--identity", "a@x"]) == 4
    assert "already signed" in capsys.readouterr().err
    (reports / DEPLOYMENT / "signatures" / "deployed-by.json").write_text("{not json")
    assert main(["verify", DEPLOYMENT, *args]) == 1
    assert "deployed-by.json is not valid JSON" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["sign", DEPLOYMENT, "--role", "boss", "--key", str(key)])
    assert exc.value.code == 2


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "deploycheck", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "Exit codes" in out.stdout and "rehearsal-sign" in out.stdout


def test_encrypted_pem_key_and_a_record_that_does_not_verify(reports, tmp_path, monkeypatch, capsys):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    build(reports)
    key = tmp_path / "enc.pem"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw-1234")))
    args = ["sign", DEPLOYMENT, "--reports-dir", str(reports), "--role", "verified-by", "--key", str(key),
            "--identity", "bob@ops"]
    monkeypatch.setenv(sign.PASSPHRASE_ENV, "wrong")
    assert main(args) == 3 and "wrong passphrase" in capsys.readouterr().err
    monkeypatch.setenv(sign.PASSPHRASE_ENV, "pw-1234")
    assert main(args) == 0
    # a record.json that still parses but lost a part: named, never a traceback; signing it is refused
    path = reports / DEPLOYMENT / "record.json"
    record = json.loads(path.read_text())
    del record["items"][0]["blanks"]
    path.write_bytes(rec.render_json(record))
    assert main(["verify", DEPLOYMENT, "--reports-dir", str(reports)]) == 1
    assert "FAILED: record.json" in capsys.readouterr().err
    assert main([*args[:-2], "--identity", "carol@ops", "--force"]) == 4
    assert "record does not verify" in capsys.readouterr().err


# ------------------------------------------------------------------ a record that lasts, readable by an auditor

def test_a_template_change_does_not_fail_a_record_signed_before_it(signed, tmp_path, monkeypatch):
    """record.html is derived: after a cosmetic change of the template, a record signed before it still
    verifies (its page is checked for the record digest it names); re-rendered, it is compared in full."""
    reports, allowed = signed
    folder = reports / DEPLOYMENT
    templates = tmp_path / "templates"
    shutil.copytree(render.TEMPLATES, templates)
    css = templates / "record.css"
    css.write_text(css.read_text() + "\nh1{color:#036}\n")
    monkeypatch.setattr(render, "TEMPLATES", templates)
    check = verify(reports, DEPLOYMENT, allowed)
    assert check.ok, check.problems
    assert any("re-render it" in note for note in check.notes)
    # an older page that no longer names this record is still caught
    page = folder / "record.html"
    original = page.read_bytes()
    digest = rec.record_digest(json.loads((folder / "record.json").read_text()))
    page.write_bytes(original.replace(digest.encode(), b"0" * 64))
    check = verify(reports, DEPLOYMENT, allowed)
    assert not check.ok and check.first_bad_file == "record.html" and "not rendered from this record" in check.problems[0][1]
    page.write_bytes(original)
    assert main(["render", DEPLOYMENT, "--reports-dir", str(reports)]) == 0
    assert b"h1{color:#036}" in page.read_bytes()
    check = verify(reports, DEPLOYMENT, allowed)
    assert check.ok and not any("re-render it" in note for note in check.notes)
    flip_byte(page)
    assert verify(reports, DEPLOYMENT, allowed).first_bad_file == "record.html"


@needs_ssh
def test_pem_signatures_are_sshsig_and_ssh_keygen_agrees(signed, tmp_path):
    """One trust path: a raw Ed25519 PEM key signs into SSHSIG too, which ssh-keygen -Y verify accepts."""
    reports, allowed = signed
    sig = json.loads((reports / DEPLOYMENT / "signatures" / "verified-by.json").read_text())
    assert sig["key_type"] == "ed25519-pem" and sig["algorithm"] == "ssh-ed25519 (SSHSIG, sha512)"
    (tmp_path / "payload.sig").write_text(sig["signature"])
    out = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", sig["signer"], "-n", "deploycheck",
                          "-s", str(tmp_path / "payload.sig")], input=sig["payload"].encode(), capture_output=True)
    assert out.returncode == 0, out.stderr


@needs_ssh
def test_sshsig_path_checks_ssh_keygen_signatures_against_allowed_signers(signed, tmp_path):
    """An ssh-keygen signature verifies through sshsig; the same key listed for another identity, or for
    another namespace, is refused."""
    from deploycheck.record import trust
    reports, allowed = signed
    sig = json.loads((reports / DEPLOYMENT / "signatures" / "deployed-by.json").read_text())
    assert sig["key_type"] == "ssh"
    assert trust.check_signature(sig, allowed).startswith("trusted")
    key = " ".join(sig["public_key"].split()[:2])
    for line in (f"bob@ops {key}", f'alice@ops namespaces="git" {key}', f"*,!alice@ops {key}"):
        other = tmp_path / "other_signers"
        other.write_text(line + "\n")
        with pytest.raises(sigfile.SigningError, match="is not in"):
            trust.check_signature(sig, other)
    other.write_text(f'alice@* namespaces="deploycheck,git" {key}\n')
    assert trust.check_signature(sig, other).startswith("trusted")


def test_nested_evidence_renders_as_small_tables(tmp_path):
    folder = tmp_path / "reports" / DEPLOYMENT
    folder.mkdir(parents=True)
    run = entry("r1", ["preflight"], "2025-01-05T14:00:00+00:00", "2025-01-05T14:06:10+00:00")
    run["items"]["5.1"]["evidence"].update({
        "tables": {"orders": 200, "deposits": 60},
        "Query Timings": {"items of an order": {"ms": 0.028, "rows": 3}, "coupon by code": {"ms": 0.014, "rows": 1}},
        "First Mismatches": [{"code": "PUBG60", "stock": 2}, {"code": "STEAM60", "stock": 88, "note": "by hand"}],
        "Schema": {"columns": {f"orders.c{n}": "integer" for n in range(30)}}})
    write_run(folder, run)
    page = (folder / "record.html").read_text() if build(tmp_path / "reports") else ""
    assert '<table class="nested">' in page
    assert "<th>orders</th><td class=\"num\">200</td>" in page
    assert "<th>code</th><th>stock</th><th>note</th>" in page  # a list of rows: a column per key
    assert "<th></th><th>ms</th><th>rows</th>" in page  # query → timings: a row per query
    assert '{"orders"' not in page and "{&#34;" not in page and "&#39;orders&#39;" not in page  # never raw JSON
    # a long value is summarised in the checklist and shown in full below it
    assert "in full under Evidence in full" in page and "<h2>Evidence in full</h2>" in page
    assert "orders.c29" in page
