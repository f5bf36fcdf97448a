"""Rehearse the operator's own release (`pytest --bot-dir PATH`): a checkout shaped like bot-auto-order
(src/main.py, src/server.py, requirements.txt, scripts/, tags) built from the stand-in, its bot in its own
environment behind the fakes. Each case is the whole suite in a subprocess, as an operator runs it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploycheck.rehearsal.checkout import RUNNER, build_checkout, git

ROOT = Path(__file__).resolve().parents[2]
PROMPTING_RUNNER = '''"""A runner that asks first, as bot-auto-order's does (input() on standard input)."""
import subprocess, sys
from pathlib import Path
answer = input("Continue? (yes/no): ")
if answer.strip().lower() not in ("yes", "y"):
    print("Migration cancelled by user")
    sys.exit(0)
sys.exit(subprocess.call([sys.executable, str(Path(__file__).with_name("real_run_migration.py")), *sys.argv[1:]]))
'''


def suite(checkout: Path, reports: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p",
                           "deploycheck.pytest_plugin", "-p", "no:cacheprovider", "-q", f"--bot-dir={checkout}",
                           f"--reports-dir={reports}", "--deployment-id", "own", "--bot-run-seconds", "0", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    ledger = (reports / "own" / "ledger.jsonl").read_text().splitlines()
    return done, json.loads(ledger[-1])["items"]


def release(checkout: Path, message: str) -> None:
    """Commit what changed as the release, and move its tag there (the rehearsal deploys v0.7.0)."""
    git(checkout, "add", "-A")
    git(checkout, "commit", "-q", "-m", message)
    git(checkout, "tag", "-f", "v0.7.0")


@pytest.fixture
def checkout(tmp_path) -> Path:
    return build_checkout(tmp_path / "repo", "standin")


def test_release_whose_bot_does_not_import_is_no_go_naming_its_error(checkout, tmp_path):
    """Like the tagged v0.7.0 (a5bba74): src/services/payment.py has an unclosed '(' — here src/payment.py."""
    payment = checkout / "src" / "payment.py"
    payment.write_text("async def create_deposit_invoice(\n" + payment.read_text())
    release(checkout, "v0.7.0 with the duplicated signature")
    done, items = suite(checkout, tmp_path / "reports", "-m", "preflight or deploy")
    assert items["5.3+release"]["outcome"] == "failed", done.stdout[-3000:]
    assert "SyntaxError" in items["5.3+release"]["message"] and "payment.py" in items["5.3+release"]["message"]
    assert items["6.1"]["outcome"] == "not run" and "NO-GO" in done.stdout  # stop means stop: no window
    # Past the NO-GO on purpose: the window starts the release, and 10.4 names the bot's own error.
    done, items = suite(checkout, tmp_path / "again", "-m", "preflight or deploy",
                        "--override", "selftest: see the window start a release that does not import")
    assert items["10.4"]["outcome"] == "failed" and "SyntaxError" in items["10.4"]["message"], items["10.4"]


def test_runner_that_asks_is_told_yes_and_the_prompt_is_evidence(checkout, tmp_path):
    runner = checkout / RUNNER
    runner.rename(runner.with_name("real_run_migration.py"))
    runner.write_text(PROMPTING_RUNNER)
    release(checkout, "v0.7.0 with a runner that asks")
    done, items = suite(checkout, tmp_path / "reports", "-m", "preflight")
    rehearsed = items["5.3"]
    assert rehearsed["outcome"] == "passed", (rehearsed["message"], done.stdout[-2000:])
    assert rehearsed["evidence"]["Runner Prompt"].startswith("Continue? (yes/no):")
    assert rehearsed["evidence"]["Answer Given"] == "yes"


def test_operators_checkout_is_left_as_it_was(checkout, tmp_path):
    """The rehearsal deploys a copy: the operator's branch, HEAD and working tree stay untouched, also by
    the code rollback (16.3) and the redeploy."""
    (checkout / "NOTES.txt").write_text("the operator's uncommitted notes\n")
    git(checkout, "checkout", "-q", "-b", "operators-branch")
    head = git(checkout, "rev-parse", "HEAD")
    suite(checkout, tmp_path / "reports", "-m", "preflight")
    assert git(checkout, "rev-parse", "--abbrev-ref", "HEAD") == "operators-branch"
    assert git(checkout, "rev-parse", "HEAD") == head and (checkout / "NOTES.txt").exists()


def test_release_ref_that_is_not_there_says_so(checkout, tmp_path):
    done, items = suite(checkout, tmp_path / "reports", "-m", "preflight", "--release-ref", "v9.9.9")
    messages = " ".join(r["message"] or "" for r in items.values())
    assert "--release-ref v9.9.9 is not a tag or commit" in messages and "give the release's commit" in messages


@pytest.mark.parametrize("outbound, says", [
    ("(2, [{}, {}], [{'host': 'example.com', 'port': 443, 'via': 'httpx', 'origin': 'src/alerts.py:9'}])",
     "*tried 1 outbound connection(s)*example.com:443 from src/alerts.py:9*"),
    ("(2, [{}], [])", "*guard was installed in 1 of the 2 bot processes*"),
])
def test_outbound_connection_refused_or_unguarded_process_fails_14_2(project, copy_tests, outbound, says):
    copy_tests("postdeploy/test_outbound.py")
    (project.path / "tests" / "conftest.py").write_text(
        f"import pytest\n\n@pytest.fixture\ndef outbound():\n    return {outbound}\n")
    result = project.runpytest_subprocess("--target", "embedded", "-m", "postdeploy", "-k", "outbound")  # test_outbound.py is also a self-test module name
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([says])
