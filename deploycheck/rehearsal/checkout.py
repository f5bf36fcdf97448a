"""The rehearsal's bot checkout: a git repository shaped like bot-auto-order's, with a local remote.

History: v0.6.0 (the bot) then v0.7.0 (the migration, its runner and the release documents), so the
code checks (3.1, 3.2) and the code rollback (16.3) have something real to work on. The stand-in's
src/version.py says which of the two a commit is (its image, its log and its /version answer tell them apart).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from deploycheck.resources import ROOT

MIGRATION = "scripts/migrations/001_fix_schema_constraints.sql"
RUNNER = "scripts/run_migration.py"
RELEASE_DOCS = ("FIXES_SUMMARY_v0.7.0.txt", "docs/TESTING_GUIDE_v0.7.0.md", "RELEASE_v0.7.0_EXECUTIVE_SUMMARY.md")
REQUIREMENTS = "python-telegram-bot>=22,<23\nasyncpg>=0.29\n"
VERSION_FILE = "src/version.py"


def _set_version(checkout: Path, version: str) -> None:
    """The stand-in's src/version.py says `version` (the reference bot has none)."""
    path = checkout / VERSION_FILE
    if path.exists():
        path.write_text(re.sub(r'^VERSION = ".*"$', f'VERSION = "{version}"', path.read_text(), flags=re.M))


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", "-c", "user.name=deploycheck rehearsal", "-c", "user.email=rehearsal@localhost",
                             "-c", "init.defaultBranch=main", "-c", "advice.detachedHead=false", *args],
                            cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {cwd} failed: {result.stderr.strip()}")
    return result.stdout.strip()


BOTS = {"reference": "bot", "standin": "standin-bot"}   # fixtures/<folder>: the old reference bot, the stand-in


def build_checkout(folder: Path, bot: str = "reference") -> Path:
    """folder/origin.git (the remote) and folder/bot-auto-order (the checkout on main, at v0.7.0). The
    reference bot sits under bot/; the stand-in has bot-auto-order's own layout (src/, requirements.txt)."""
    checkout, origin = folder / "bot-auto-order", folder / "origin.git"
    source = ROOT / "fixtures" / BOTS[bot]
    ignore = shutil.ignore_patterns("__pycache__", "logs")
    if bot == "reference":
        shutil.copytree(source, checkout / "bot", ignore=ignore)
        (checkout / "requirements.txt").write_text(REQUIREMENTS)
    else:
        shutil.copytree(source, checkout, ignore=ignore)
    # /deployments/: tenants provisioned in the checkout (rehearsal.tenant), as bot-auto-order ignores them
    (checkout / ".gitignore").write_text("__pycache__/\n*.pyc\nlogs/\n/deployments/\n")
    _set_version(checkout, "0.6.0")
    git(checkout, "init", "-q")
    git(checkout, "add", "-A")
    git(checkout, "commit", "-q", "-m", "v0.6.0")
    git(checkout, "tag", "v0.6.0")
    _set_version(checkout, "0.7.0")
    for relative in (MIGRATION, RUNNER):  # beside the stand-in's own scripts/run_stack.sh
        (checkout / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, checkout / relative)
    for doc in RELEASE_DOCS:
        (checkout / doc).parent.mkdir(parents=True, exist_ok=True)
        (checkout / doc).write_text(f"{Path(doc).stem} (rehearsal copy)\n")
    git(checkout, "add", "-A")
    git(checkout, "commit", "-q", "-m", "v0.7.0: schema constraints, indexes, audit log")
    git(checkout, "tag", "v0.7.0")
    git(folder, "clone", "-q", "--bare", str(checkout), str(origin))
    _track(checkout, origin)
    return checkout


def _track(checkout: Path, origin: Path) -> None:
    git(checkout, "remote", "add", "origin", str(origin))
    git(checkout, "fetch", "-q", "origin")
    git(checkout, "branch", "-q", "--set-upstream-to=origin/main", "main")


def clone_release(source: Path, folder: Path, release_ref: str, previous_ref: str | None = None) -> Path:
    """The operator's checkout rehearsed without touching it: a bare copy of its history as the remote, with
    main at the release (as production would pull it), and a checkout of that. Their working tree, branches
    and stashes stay as they are; uncommitted changes are not part of the release."""
    source = Path(source).resolve()
    if not (source / ".git").exists() and not (source / "HEAD").exists():
        raise RuntimeError(f"--bot-dir {source} is not a git checkout: the rehearsal takes the release from its "
                           "history (--release-ref)")
    origin, checkout = folder / "origin.git", folder / "bot-auto-order"
    git(folder, "clone", "-q", "--bare", "--no-local", str(source), str(origin))
    try:
        release = git(origin, "rev-parse", "--verify", "--quiet", f"{release_ref}^{{commit}}")
    except RuntimeError:
        tags = git(origin, "tag", "--list") or "none"
        raise RuntimeError(f"--release-ref {release_ref} is not a tag or commit of {source} (its tags: "
                           f"{tags.split()[:10] if tags != 'none' else 'none'}): give the release's commit") from None
    git(origin, "update-ref", "refs/heads/main", release)
    git(origin, "symbolic-ref", "HEAD", "refs/heads/main")
    git(folder, "clone", "-q", str(origin), str(checkout))
    for ref in filter(None, (release_ref, previous_ref)):  # a branch name of theirs resolves here too (3.2)
        try:
            git(checkout, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except RuntimeError:
            found = git(origin, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
            git(checkout, "branch", "-q", ref, found)
    return checkout
