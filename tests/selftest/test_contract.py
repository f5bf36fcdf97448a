"""The seams of the reshape hold: library code fails one way (CheckFailed, also under `python -O`), checks
do not import pytest, the checklist data is the contract between items (what one records, another reads),
and commands on the bot host are bounded by a timeout."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploycheck import checklist
from deploycheck.checklist import ChecklistError
from deploycheck.infra.host import BotHost, HostTimeout

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "deploycheck"
THIN_TESTS = [p for phase in ("preflight", "deploy", "postdeploy", "smoke", "monitor", "rollback")
              for p in sorted((ROOT / "tests" / phase).glob("*.py"))]


def test_a_failing_check_fails_under_python_O():
    """`python -O` strips assert statements: a check written with them would pass silently."""
    probe = ("from deploycheck.checks import environment\n"
             "environment.check_message('Estimasi selesai: [TIME].')\n")
    done = subprocess.run([sys.executable, "-O", "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, "the check passed under python -O"
    assert "CheckFailed: the maintenance message still says [TIME]" in done.stderr


def test_library_code_has_no_bare_assert():
    found = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in PACKAGE.rglob("*.py")
             for node in ast.walk(ast.parse(path.read_text(), str(path))) if isinstance(node, ast.Assert)]
    assert not found, f"bare assert in library code (removed by python -O): raise CheckFailed instead: {found}"


def test_checks_do_not_import_pytest():
    found = [str(path.relative_to(ROOT)) for path in (PACKAGE / "checks").glob("*.py")
             if re.search(r"^\s*(import pytest|from pytest)", path.read_text(), re.M)]
    assert not found, f"checks are pure (inputs in, evidence out, or CheckFailed): {found} import pytest"


def test_thin_tests_do_not_branch_on_rehearsal():
    found = [f"{path.relative_to(ROOT)}:{n}" for path in THIN_TESTS
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"\.rehearsal\b(?!\.)|\.kind\b", line)]
    assert not found, f"a rehearsal and production differ in the fixtures' backends, not in the tests: {found}"


def write_checklist(tmp_path, source_records: str, reads: str) -> Path:
    path = tmp_path / "checklist.toml"
    path.write_text(f'''release = "0.7.0"
title = "t"
[[item]]
id = "6.1"
title = "Stop bot service"
phase = "deploy"
kind = "action"
{source_records}
[[item]]
id = "6.4"
title = "Record downtime start"
phase = "deploy"
kind = "record"
{reads}
''')
    return path


def test_a_read_of_a_key_the_item_does_not_record_fails_at_load(tmp_path):
    good = checklist.load(write_checklist(tmp_path, 'records = ["Stopped At"]', 'reads = ["6.1:Stopped At"]'))
    assert good["6.4"].reads == (checklist.Read("6.1", "Stopped At"),)
    with pytest.raises(ChecklistError, match=r"item 6.4 reads 'Stoped At' of item 6.1, which does not record it"):
        checklist.load(write_checklist(tmp_path, 'records = ["Stopped At"]', 'reads = ["6.1:Stoped At"]'))
    with pytest.raises(ChecklistError, match=r"item 6.4 reads 9.9:X, but there is no item 9.9"):
        checklist.load(write_checklist(tmp_path, "", 'reads = ["9.9:X"]'))
    # an attested item's time is readable from any item (a stop done by hand)
    checklist.load(write_checklist(tmp_path, "", 'reads = ["6.1:Attested At"]'))


def test_thin_tests_read_only_what_the_data_declares():
    """Each `recorded("X").get("K")` / `["K"]` in a thin test names a key X records and its item reads."""
    data = checklist.default()
    problems = []
    for path in THIN_TESTS:
        tree = ast.parse(path.read_text())
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            marks = [d for d in function.decorator_list if isinstance(d, ast.Call) and
                     getattr(d.func, "attr", None) == "item" and d.args]
            reader = data[marks[0].args[0].value] if marks else None
            for source, key in reads_in(function):
                for item_id in source:
                    if key and not data[item_id].readable(key):
                        problems.append(f"{path.name}:{function.name} reads {item_id}:{key}, not recorded")
                    elif reader and key and checklist.Read(item_id, key) not in reader.reads \
                            and key not in checklist.ATTESTED:
                        problems.append(f"{path.name}:{function.name} ({reader.id}) reads {item_id}:{key}, "
                                        "not in its reads")
    assert not problems, problems


def reads_in(function) -> list[tuple[tuple[str, ...], str | None]]:
    """recorded(...) calls with a constant key read from them directly: (item ids, key)."""
    found = []
    for node in ast.walk(function):
        call = node.value if isinstance(node, ast.Subscript) else \
            node.func.value if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get" else None
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "recorded":
            key = node.slice if isinstance(node, ast.Subscript) else (node.args[0] if node.args else None)
            found.append((tuple(a.value for a in call.args), getattr(key, "value", None)))
    return found


def test_recorded_refuses_a_key_not_declared(project):
    (project.path / "tests" / "test_reads.py").write_text('''
import pytest

@pytest.mark.item("1.3")
def test_identity(evidence):
    evidence["Database Identity"] = {"name": "bot_auto_order"}

@pytest.mark.item("7.2")
def test_typo(recorded, evidence):
    evidence["Compared With"] = recorded("1.3").get("Database Identiy")

@pytest.mark.item("7.2")
def test_undeclared(recorded, evidence):
    evidence["Compared With"] = recorded("5.1").get("Users")
''')
    result = project.runpytest("--target", "embedded", "-k", "identity or typo or undeclared")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*item 7.2 reads 'Database Identiy' of item 1.3, which does not record it*",
                                 "*item 7.2 reads 5.1, which its `reads` in the checklist data do not name*"])


def test_a_command_that_hangs_on_the_host_is_a_clear_failure():
    host = BotHost.get("local://")
    assert host.run("echo hi | tr a-z A-Z").stdout == "HI\n"  # a shell line: pipes and all, bounded
    with pytest.raises(HostTimeout, match=r"`sleep 30` did not finish within 1 s on this machine; see whether"):
        host.run("sleep 30", timeout=1)


def test_a_hanging_command_over_ssh_is_bounded(sshd):
    import time
    host = BotHost.get(sshd.host_spec)
    began = time.monotonic()
    with pytest.raises(HostTimeout):
        host.run("sleep 30", timeout=1)
    assert time.monotonic() - began < 10
