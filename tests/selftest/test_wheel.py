"""The built wheel runs outside this checkout (issue 23, item 8): built from this checkout, installed into a fresh
virtualenv, then, in an empty folder with that virtualenv's python, `pytest --collect-only` collects every item
of the checklist and `pytest -m preflight` rehearses on a throwaway database and ends GO.

Nothing is downloaded. The wheel is built with this environment's setuptools (--no-build-isolation), from a copy
of the checkout (pip builds in the source tree: build/ and the egg-info would land in the checkout, and two
workers building at once would share them). The fresh virtualenv gets the project's dependencies from this
environment through a .pth file naming its site-packages: a plain path line, so the .pth files there (the
editable install's finder, which would put this checkout's deploycheck first) are not run, and the fresh
virtualenv's own copy of deploycheck, from the wheel, is the one imported. Checked below, not assumed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from deploycheck import checklist
from deploycheck.resources import BUNDLE, ROOT

PHASES_EXPR = " or ".join(checklist.PHASES)
NOT_COPIED = (".git", ".venv", "venv", "reports", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
              ".ruff_cache")
PROBE = '''"""Loaded with -p: what the run collected, read from the plugin's own nodes (each has its checklist item)."""
import json, os
import deploycheck, deploycheck.resources

def pytest_collection_finish(session):
    nodes = [{"nodeid": n.nodeid, "path": str(n.path),
              "item": getattr(getattr(n, "checklist_item", None), "id", None)} for n in session.items]
    with open(os.environ["DEPLOYCHECK_WHEEL_PROBE"], "w") as out:
        json.dump({"deploycheck": deploycheck.__file__, "root": str(deploycheck.resources.ROOT), "nodes": nodes}, out)
'''


def tail(done: subprocess.CompletedProcess, chars: int = 4000) -> str:
    out = (done.stdout or "") + ("\n--- stderr ---\n" + done.stderr if done.stderr else "")
    return out[-chars:]


def run(what: str, command: list[str], *, ok=(0,), timeout: int = 300, **kwargs) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              **kwargs)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
        pytest.fail(f"{what}: no answer within {timeout} s\n$ {' '.join(command)}\n{out[-4000:]}", pytrace=False)
    if done.returncode not in ok:
        pytest.fail(f"{what}: exit {done.returncode}\n$ {' '.join(command)}\n--- last of the output ---\n{tail(done)}",
                    pytrace=False)
    return done


def site_packages(python: str) -> Path:
    done = run("reading a virtualenv's site-packages",
               [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    return Path(done.stdout.strip())


class Installed:
    """The wheel, and a fresh virtualenv with it installed and the dependencies borrowed from this one."""

    def __init__(self, base: Path):
        if ROOT == BUNDLE:
            pytest.skip("the wheel is built from a checkout; this deploycheck is an installed one")
        setuptools = tuple(int(p) for p in version("setuptools").split(".")[:2])
        if setuptools < (70, 1):
            pytest.fail(f"setuptools {version('setuptools')} here cannot build the wheel without the `wheel` "
                        "package: the dev extra needs setuptools>=70.1 (./run reinstalls when pyproject.toml "
                        "changes)", pytrace=False)
        source, dist, self.venv = base / "source", base / "dist", base / "venv"
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=True)
        run("building the wheel", [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                                   "--no-index", "-q", "-w", str(dist), str(source)])
        wheels = sorted(dist.glob("deploycheck-*.whl"))
        if len(wheels) != 1:
            pytest.fail(f"expected one deploycheck wheel in {dist}, found {[w.name for w in wheels]}", pytrace=False)
        self.wheel = wheels[0]
        run("making a fresh virtualenv", [sys.executable, "-m", "venv", "--without-pip", str(self.venv)])
        self.python = str(self.venv / "bin" / "python")
        # Installed before the dependencies are borrowed: this pip then sees no deploycheck already installed.
        run("installing the wheel", [sys.executable, "-m", "pip", "--python", self.python, "install", "--no-deps",
                                     "--no-index", "-q", str(self.wheel)])
        self.site = site_packages(self.python)
        here = sysconfig.get_paths()
        (self.site / "zz-deploycheck-dependencies.pth").write_text(
            "".join(f"{p}\n" for p in dict.fromkeys([here["purelib"], here["platlib"]])))
        # The dependencies' compiled programs (squawk): a Python console script from here would run this
        # environment's interpreter, so only programs that are not scripts are linked.
        self.borrowed_bin = Path(sys.prefix) / "bin"
        for program in sorted(self.borrowed_bin.iterdir()):
            target = self.venv / "bin" / program.name
            if program.is_file() and not program.is_symlink() and os.access(program, os.X_OK) \
                    and not target.exists() and program.read_bytes()[:2] != b"#!":
                target.symlink_to(program)
        self.elsewhere = base / "elsewhere"
        self.elsewhere.mkdir()
        self.env = self._env()

    def _env(self) -> dict[str, str]:
        """This process's environment without what would point the run elsewhere: a production database,
        this pytest's own settings (xdist's worker variables), this environment on PATH."""
        dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DATABASE_URL", "TELEGRAM_BOT_TOKEN")
        env = {k: v for k, v in os.environ.items()
               if k not in dropped and not k.startswith(("PYTEST_", "POSTGRES_", "PG"))}
        ours = os.path.realpath(self.borrowed_bin)
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p and os.path.realpath(p) != ours]
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), *path])
        env["VIRTUAL_ENV"] = str(self.venv)
        return env

    def pytest(self, what: str, *args: str, ok=(0,), timeout: int = 300, env=None) -> subprocess.CompletedProcess:
        return run(what, [self.python, "-m", "pytest", *args], ok=ok, timeout=timeout, cwd=self.elsewhere,
                   env={**self.env, **(env or {})})


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    return Installed(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_carries_what_a_run_reads(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    bundle = "deploycheck/bundle/"
    wanted = [f"{bundle}{p}" for p in (
        "checklists/v0.7.0.toml", "checklists/v0.7.0-expected.toml", "fixtures/generate.py",
        "fixtures/rehearsal-attestations.toml", "fixtures/schema-v0.6.sql", "fixtures/standin-bot/src/main.py",
        "fixtures/standin-bot/requirements.txt", "fixtures/bot/main.py", "scripts/run_migration.py",
        "scripts/migrations/001_fix_schema_constraints.sql")]
    wanted += [f"{bundle}checklists/profiles/{p.name}" for p in (ROOT / "checklists" / "profiles").glob("*.toml")]
    wanted += [f"{bundle}tests/{phase}/{p.name}" for phase in checklist.PHASES
               for p in (ROOT / "tests" / phase).glob("*.py")]
    wanted += [f"deploycheck/record/templates/{p.name}" for p in (ROOT / "deploycheck/record/templates").iterdir()]
    missing = [name for name in wanted if name not in names]
    assert not missing, f"{installed.wheel.name} lacks {missing}"
    junk = sorted(n for n in names if {"__pycache__", ".venv", "reports", "selftest"} & set(n.split("/"))
                  or n.endswith(".pyc"))
    assert not junk, f"{installed.wheel.name} carries {junk[:10]}"


def test_the_fresh_virtualenv_imports_the_wheels_deploycheck(installed):
    done = run("importing deploycheck in the fresh virtualenv",
               [installed.python, "-c", "import json, deploycheck, deploycheck.resources as r, pytest; "
                                        "print(json.dumps([deploycheck.__file__, str(r.ROOT), pytest.__file__]))"],
               cwd=installed.elsewhere, env=installed.env)
    module, root, pytest_module = json.loads(done.stdout)
    assert Path(module) == installed.site / "deploycheck" / "__init__.py", \
        f"deploycheck came from {module}, not the wheel's copy in {installed.site}: the editable install shadows it"
    assert Path(root) == installed.site / "deploycheck" / "bundle"
    assert not Path(pytest_module).is_relative_to(installed.venv), "pytest is borrowed, not installed again"


def test_an_empty_folder_collects_all_77_items(installed, tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "deploycheck_wheel_probe.py").write_text(PROBE)
    found = tmp_path / "collected.json"
    done = installed.pytest("collecting in an empty folder", "--collect-only", "-q", "-p", "no:cacheprovider",
                            "-p", "deploycheck_wheel_probe", "-m", PHASES_EXPR,
                            env={"PYTHONPATH": str(probe), "DEPLOYCHECK_WHEEL_PROBE": str(found)})
    seen = json.loads(found.read_text())
    bundle = installed.site / "deploycheck" / "bundle"
    assert Path(seen["deploycheck"]).is_relative_to(installed.site), seen["deploycheck"]
    assert Path(seen["root"]) == bundle, seen["root"]
    nodes = seen["nodes"]
    assert f"{len(nodes)} tests collected" in done.stdout, tail(done)
    outside = [n["path"] for n in nodes if not Path(n["path"]).is_relative_to(bundle)]
    assert not outside, f"collected from outside the wheel's bundle: {sorted(set(outside))[:5]}"
    data = checklist.default()
    collected = {n["item"] for n in nodes}
    numbered = [i for i in data.items if "+" not in i]
    assert len(numbered) == 77, f"the checklist has {len(numbered)} numbered items"
    missing = sorted(set(data.items) - collected, key=checklist.item_key)
    assert not missing, f"items not collected from the wheel: {missing}\n{tail(done)}"
    assert None not in collected, [n["nodeid"] for n in nodes if n["item"] is None]


def test_an_empty_folder_rehearses_preflight_and_ends_go(installed, tmp_path):
    before = (ROOT / "reports" / "wheel").exists()
    done = installed.pytest("pytest -m preflight in an empty folder", "-m", "preflight", "--target", "embedded",
                            "--deployment-id", "wheel", "--bot-run-seconds", "0", "-p", "no:cacheprovider",
                            f"--basetemp={tmp_path / 'inner'}", ok=(0, 1), timeout=600)
    reports = installed.elsewhere / "reports" / "wheel"
    assert done.returncode == 0, f"exit {done.returncode}, not GO:\n{tail(done)}"
    assert any(line.strip("= ").startswith("GO") for line in done.stdout.splitlines()), tail(done)
    jsons = sorted(reports.glob("preflight-*.json"))
    assert jsons and sorted(reports.glob("preflight-*.html")) and (reports / "ledger.jsonl").is_file(), \
        f"no reports under {reports}: {sorted(p.name for p in installed.elsewhere.rglob('*'))[:20]}"
    report = json.loads(jsons[-1].read_text())
    assert report["verdict"] == "GO" and report["phases"] == ["preflight"], (report["verdict"], report["failed_items"])
    assert report["target"]["kind"] == "embedded" and report["target"]["rehearsal"]
    # The run read the wheel's files, not this checkout's: no path of the checkout in the report but the
    # borrowed dependencies' (the embedded PostgreSQL's binaries).
    text = jsons[-1].read_text()
    checkout = f"{ROOT}/"
    borrowed = f"{sys.prefix}/"
    mentions = [text[i:i + 120] for i in range(len(text)) if text.startswith(checkout, i)
                and not text.startswith(borrowed, i)]
    assert not mentions, f"the run read this checkout: {mentions[:3]}"
    assert (ROOT / "reports" / "wheel").exists() == before, "the run wrote this checkout's reports/"
    assert [p.name for p in installed.elsewhere.iterdir()] == ["reports"]
