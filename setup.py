"""Build step only: the metadata (name, dependencies, entry points, package data) is in pyproject.toml.

The built wheel must run a deployment outside this checkout (issue 23, item 8), so it carries what a run reads
from the checkout: the checklist data, expected schema and profiles (checklists/), the thin tests of every
phase (tests/<phase>/), the fixtures (stand-in bot, reference bot, baseline generator, v0.6 schema, rehearsal
attestations) and the bundled migration and its runner (scripts/). They are copied into the package as
deploycheck/bundle/, with the checkout's relative layout, and deploycheck/resources.py finds them there.

Why a build_py subclass rather than pyproject's package-data: setuptools cannot map files from outside a
package into it (package-data and data-files only take files under the package, or install beside it, not
inside it), and moving these folders into deploycheck/ would change every path that operators, the README and
the checklist's commands use (`scripts/run_migration.py`, `checklists/profiles/`, `tests/preflight/`).
"""
from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
BUNDLE = Path("deploycheck", "bundle")     # inside the package; deploycheck.resources.ROOT in an installed wheel
SKIPPED = ("__pycache__", "*.pyc", ".venv", "venv", "reports", ".pytest_cache", "logs")


def bundled(root: Path = HERE) -> list[Path]:
    """The files the wheel carries, relative to the checkout's root: the thin tests of every phase (each folder
    of tests/ but the suite's own self-tests), checklists/, fixtures/, and the migration with its runner."""
    phases = sorted(d.relative_to(root) for d in (root / "tests").iterdir() if d.is_dir() and d.name != "selftest")
    entries = [Path("checklists"), *phases, Path("fixtures"), Path("scripts", "run_migration.py"),
               Path("scripts", "migrations")]
    found = []
    for entry in entries:
        if not (root / entry).exists():
            raise SystemExit(f"deploycheck's build: {entry} is missing from {root}; the wheel would not run")
        paths = [root / entry] if (root / entry).is_file() else sorted((root / entry).rglob("*"))
        found += [p.relative_to(root) for p in paths if p.is_file()
                  and not any(fnmatch.fnmatch(part, pattern) for part in p.relative_to(root).parts
                              for pattern in SKIPPED)]
    return found


class build_py_with_bundle(build_py):
    """build_py, then the checkout's files copied into build_lib/deploycheck/bundle/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # `pip install -e .`: deploycheck.resources.ROOT is the checkout itself
        target = Path(self.build_lib) / BUNDLE
        shutil.rmtree(target, ignore_errors=True)  # nothing stale from an earlier build in the same build/
        for relative in bundled():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(HERE / relative), str(target / relative))  # keeps the mode: the runner is executable

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return outputs + [str(Path(self.build_lib) / BUNDLE / relative) for relative in bundled()]


class sdist_with_bundle(sdist):
    """The source distribution carries the same files, so a wheel built from it (python -m build) has them too."""

    def make_distribution(self) -> None:
        self.filelist.extend(str(relative) for relative in bundled())
        super().make_distribution()


setup(cmdclass={"build_py": build_py_with_bundle, "sdist": sdist_with_bundle})
