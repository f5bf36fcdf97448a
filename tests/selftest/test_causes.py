"""A NO-GO an operator can act on: its causes first, each once, with what it caused folded under it (issue 27).

Inner runs use stand-in tests for the items (as test_prerequisites.py does) with the real checklist data: what
is proven is the plugin's classification over the real `needs` and `outcome_of`."""
from __future__ import annotations

import json

from deploycheck import checklist
from deploycheck.fleet.summary import by_cause
from deploycheck.fleet.waves import GO, NO_GO, TenantState
from deploycheck.pytest_plugin import causes, messages
from deploycheck.record.ledger import Ledger

WINDOW = ("1.3", "4.1", "4.2", "4.4", "6.1", "6.2", "6.3", "6.4", "7.1", "7.2", "7.3", "7.4", "7.5", "9.1", "9.2",
          "9.3", "10.1", "10.2", "10.3", "10.4", "10.5")
POSTDEPLOY = ("8.1", "8.2", "8.3", "8.4")
# 21 checks with a test of their own; the first that uses the broken fixture is the cause, 20 follow from it
CHECKS = ("1.1", "1.2", "1.3", "1.4", "1.5", "3.1", "3.2", "3.3", "3.4", "8.1", "8.2", "8.3", "8.4", "12.1", "12.2",
          "12.3", "13.1", "13.2", "13.3", "14.1", "14.2")


def stand_ins(project, *items: str, fixture: str = "", body: str = "", name: str = "test_stand_ins.py") -> None:
    lines = ["import os, pytest", "from pathlib import Path", "", body,
             "def act(item):",
             "    with Path('ran.txt').open('a') as ran:",
             "        ran.write(item + '\\n')",
             "    if item in os.environ.get('FAIL', '').split(','):",
             "        pytest.fail(f'{item} failed on purpose', pytrace=False)", ""]
    for item in items:
        lines += [f"@pytest.mark.item({item!r})", f"def test_{item.replace('.', '_')}({fixture}):",
                  f"    act({item!r})", ""]
    (project.path / "tests" / name).write_text("\n".join(lines))


def ran(project) -> list[str]:
    path = project.path / "ran.txt"
    return path.read_text().split() if path.exists() else []


def entries(project) -> list[dict]:
    return Ledger(next((project.path / "reports").glob("*/ledger.jsonl"))).read()


def by_item(entry: dict) -> dict:
    return {c["item"]: c for c in entry["causes"]}


BROKEN_FIXTURE = '''
@pytest.fixture(scope="session")
def running_bot():
    raise RuntimeError("the bot running before the window did not start: src/services/payment.py line 248: "
                       "SyntaxError: '(' was never closed")
'''


def test_a_fixture_error_shared_by_20_items_is_one_cause_with_20_consequences(project):
    stand_ins(project, *CHECKS, fixture="running_bot", body=BROKEN_FIXTURE)
    project.runpytest("--target", "embedded", "-m", "preflight or postdeploy")
    entry = entries(project)[-1]
    assert entry["verdict"] == "NO-GO"
    mine = [c for c in entry["causes"] if c["item"] in CHECKS]  # (4.4, collected from the data, waits for a 4.2)
    assert [c["item"] for c in mine] == ["1.1"], entry["causes"]
    cause = mine[0]
    same = [i for i in CHECKS[1:] if entry["items"][i]["message"] == "same error as 1.1 (see 1.1)"]
    assert len(same) == 20 and set(same) <= set(cause["consequences"])  # (and 4.1, which needs 1.3)
    assert "SyntaxError: '(' was never closed" in cause["message"]
    # no message repeats another's text: it points to it
    assert entry["items"]["1.2"]["message"] == "same error as 1.1 (see 1.1)"
    assert "was never closed" in entry["items"]["1.2"]["detail"]


def test_an_outcome_check_after_a_refused_window_is_not_run(project, monkeypatch):
    stand_ins(project, *WINDOW, *POSTDEPLOY)
    monkeypatch.setenv("FAIL", "7.2")
    project.runpytest("--target", "embedded", "-m", "preflight or deploy or postdeploy")
    assert not set(POSTDEPLOY) & set(ran(project)), ran(project)
    entry = entries(project)[-1]
    for item_id in POSTDEPLOY:
        assert entry["items"][item_id]["outcome"] == "not run"
        assert entry["items"][item_id]["message"] == "not run: 7.3 did not run"
    assert [c["item"] for c in entry["causes"]] == ["7.2"]
    assert set(POSTDEPLOY) <= set(entry["causes"][0]["consequences"])
    # a later postdeploy of the same deployment: the ledger says the migration did not run
    (project.path / "ran.txt").unlink()
    project.runpytest("--target", "embedded", "-m", "postdeploy")
    later = entries(project)[-1]
    assert not ran(project)
    assert later["items"]["8.1"]["message"].startswith("not run: 7.3 did not run in its last run")
    # one cause (the missing migration): the other three of the same reason under it, and the checks of the
    # release's processes and log, not run because 10.1 did not run, which needs 7.3
    assert [c["item"] for c in later["causes"]] == ["8.1"]
    assert later["causes"][0]["consequences"] == [*POSTDEPLOY[1:], "13.1", "13.2", "14.1", "14.2"]
    assert later["items"]["14.1"]["message"].startswith("not run: 10.1 did not run in its last run")


def test_an_outcome_check_with_no_record_of_the_action_observes(project):
    stand_ins(project, *POSTDEPLOY)
    project.runpytest("--target", "embedded", "-m", "postdeploy")
    assert set(POSTDEPLOY) <= set(ran(project))


SAME_LINE = "def start():\n    raise RuntimeError(\"payment.py line 248: SyntaxError: '(' was never closed\")\n"


def test_independent_failures_stay_separate_causes_and_one_error_twice_is_one(project, monkeypatch):
    # the previous release and the release failing on the same line: two versions, two causes
    (project.path / "tests" / "previous_release.py").write_text(SAME_LINE)
    (project.path / "tests" / "new_release.py").write_text(SAME_LINE)
    body = ("import sys; sys.path.insert(0, str(Path(__file__).parent))\n"
            "import previous_release, new_release\n")
    lines = [body]
    for item_id, module in (("1.2", "previous_release"), ("1.5", "new_release"), ("3.1", "new_release")):
        lines += [f"@pytest.mark.item({item_id!r})", f"def test_{item_id.replace('.', '_')}():",
                  f"    {module}.start()", ""]
    stand_ins(project, "1.4", "3.4", body="\n".join(lines))
    monkeypatch.setenv("FAIL", "1.4,3.4")
    project.runpytest("--target", "embedded", "-m", "preflight")
    entry = entries(project)[-1]
    found = {i: c for i, c in by_item(entry).items() if i in ("1.2", "1.4", "1.5", "3.1", "3.4")}
    assert list(found) == ["1.2", "1.4", "1.5", "3.4"], entry["causes"]
    assert found["1.5"]["consequences"] == ["3.1"] and found["1.2"]["consequences"] == []
    assert found["1.4"]["message"] == "1.4 failed on purpose" and found["1.4"]["consequences"] == []


def test_the_ledger_the_report_and_the_record_carry_the_causes(project, monkeypatch):
    stand_ins(project, *WINDOW)
    monkeypatch.setenv("FAIL", "4.2")
    project.runpytest("--target", "embedded", "-m", "preflight or deploy")
    entry = entries(project)[-1]
    assert [c["item"] for c in entry["causes"]] == ["4.2"]
    assert "4.4" in entry["causes"][0]["consequences"] and "7.3" in entry["causes"][0]["consequences"]
    folder = next((project.path / "reports").glob("*/ledger.jsonl")).parent
    record = json.loads((folder / "record.json").read_text())
    assert [c["item"] for c in record["verdict"]["causes"]] == ["4.2"]
    assert "7.3" in record["verdict"]["causes"][0]["consequences"]
    assert record["verdict"]["line"].startswith("NO-GO (causes: 4.2;")
    html = (folder / "record.html").read_text()
    assert "<h2>Causes</h2>" in html and "4.2 failed on purpose" in html
    report = next(folder.glob("preflight+deploy-*.html")).read_text()
    assert report.index("Causes (1)") < report.index("Stop-the-deployment gates")
    # words fit the target: a rehearsal speaks of its copy, not of production
    assert "Where the rehearsal&#x27;s copy stands now" in report or "Where the rehearsal's copy stands now" in report
    assert "Where production stands" not in report
    document = json.loads(next(folder.glob("preflight+deploy-*.json")).read_text())
    assert document["causes"] == entry["causes"] and document["production"]["of"] == "the rehearsal's copy"


def test_the_last_25_lines_of_an_80_column_terminal_name_every_cause(project, monkeypatch):
    stand_ins(project, *CHECKS[:9], fixture="running_bot", body=BROKEN_FIXTURE)
    stand_ins(project, *WINDOW[1:], name="test_window.py")
    monkeypatch.setenv("FAIL", "4.2,7.1,7.2")
    monkeypatch.setenv("COLUMNS", "80")
    result = project.runpytest("--target", "embedded", "-m", "preflight or deploy")
    named = [c["item"] for c in entries(project)[-1]["causes"]]
    assert len(named) >= 4 and {"1.1", "4.2", "7.1", "7.2"} <= set(named), named
    last = result.stdout.lines[-25:]
    for item_id in named:
        assert any(line.startswith(f"  {item_id} ") for line in last), (item_id, "\n".join(last))
    verdict = next(line for line in last if "NO-GO: causes" in line)
    assert all(item_id in verdict for item_id in named)
    assert all(len(line) <= 80 for line in last if line.startswith("  ")), last


def test_a_traceback_is_reduced_to_its_error_line_and_the_operators_frames():
    text = ("the release's bot did not start (exit 1):\n"
            "Traceback (most recent call last):\n"
            '  File "/work/shop/src/main.py", line 3, in <module>\n'
            "    from src.services import payment\n"
            '  File "/usr/lib/python3.11/importlib/__init__.py", line 126, in import_module\n'
            "    return _bootstrap._gcd_import(name[level:], package, level)\n"
            '  File "/work/shop/src/services/payment.py", line 248\n'
            "    def pay(\n"
            "           ^\n"
            "SyntaxError: '(' was never closed\n"
            "read its log: reports/x/bot.log")
    short = messages.shorten(text, ("/work/shop",))
    assert short.splitlines() == [
        "the release's bot did not start (exit 1):",
        "src/services/payment.py line 248, called from src/main.py line 3: SyntaxError: '(' was never closed",
        "read its log: reports/x/bot.log"]
    assert "importlib" not in short
    # the error line first, where 80 columns keep it
    assert messages.one_line(short).startswith("src/services/payment.py line 248, called from src/main.py line 3: "
                                               "SyntaxError: '(' was never closed")
    assert messages.shorten("plain message\nwith two lines") == "plain message\nwith two lines"


def test_words_fit_the_target():
    assert causes.where(rehearsal=True) == "the rehearsal's copy" and causes.where(rehearsal=False) == "production"


def test_the_fleet_summary_groups_tenants_by_cause(tmp_path):
    cause = {"item": "5.3", "message": "the migration failed on the restored copy: ERROR: negative amount",
             "consequences": ["6.1"]}
    rows = []
    for name, found in (("shop-a", [cause]), ("shop-b", [cause]), ("shop-c", [cause]),
                        ("shop-d", [{"item": "1.3", "message": "the database did not answer", "consequences": []}])):
        Ledger(tmp_path / name / "ledger.jsonl").append({"run_id": name, "verdict": "NO-GO", "causes": found,
                                                         "items": {}})
        rows.append(TenantState(name, 1, NO_GO, name, str(tmp_path / name)))
    rows.append(TenantState("shop-e", 1, GO, "shop-e", str(tmp_path / "shop-e")))
    groups = by_cause(rows)
    assert [(g["item"], g["tenants"]) for g in groups] == [("5.3", ["shop-a", "shop-b", "shop-c"]),
                                                           ("1.3", ["shop-d"])]


def test_what_reads_a_failed_item_is_its_consequence_and_the_cause_line_keeps_the_error():
    """13.3 reads 5.3's contract: after a 5.3 that failed it is not a cause of its own. And the one line of a
    message whose first line only announces ("...:") leads with what it announced."""
    data = checklist.default()
    items = {"5.3": {"outcome": "failed", "title": "t", "message": "the release's migration does not meet the "
                     "checklist on the restored copy:\n  8.2 Indexes Count: the checklist says 25+ idx_* indexes, "
                     "the release's migration makes 22."},
             "13.3": {"outcome": "error", "title": "t", "message": "no expectation: run preflight for this "
                      "deployment id (d1: 5.3 measures what the release's migration does on the restored copy)"}}
    (found,) = causes.classify(data, items)
    assert found["item"] == "5.3" and found["consequences"] == ["13.3"]
    assert found["message"].startswith("8.2 Indexes Count: the checklist says 25+ idx_* indexes")
    migration = messages.one_line("the migration failed on the restored copy (exit 1):\n[error] PostgresSyntaxError:"
                                  " syntax error at or near \"RAISE\"")
    assert migration.startswith('[error] PostgresSyntaxError: syntax error at or near "RAISE"')
    long = {"item": "5.3+release", "consequences": [], "title": "",
            "message": "`/root/.cache/deploycheck/venvs/ac2f2c20/bin/python -c 'import src.main'` fails: SyntaxError: "
                       "'(' was never closed"}
    assert causes.lines([long])[1] == "  5.3+release …SyntaxError: '(' was never closed"
