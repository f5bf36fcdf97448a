"""Code checks (3.1-3.4) and the code rollback (16.3): the bot checkout, through git on the host."""
from __future__ import annotations

import shlex

from deploycheck.failure import CheckFailed
from deploycheck.infra.host import BotHost


def git(host: BotHost, bot_dir: str, *args: str, timeout: int = 60):
    return host.run(" ".join(shlex.quote(a) for a in ("git", "-C", bot_dir, *args)), timeout=timeout)


def output(host: BotHost, bot_dir: str, *args: str) -> str:
    result = git(host, bot_dir, *args)
    if result.rc != 0:
        raise CheckFailed(f"git {' '.join(args)} failed in {bot_dir}: {result.stderr.strip()[-300:]}")
    return result.stdout.strip()


def check_checkout(host: BotHost, bot_dir: str, branch: str = "main") -> dict:
    """3.1: on the release branch, no local changes, not behind its remote (after a fetch)."""
    current = output(host, bot_dir, "rev-parse", "--abbrev-ref", "HEAD")
    if current != branch:
        raise CheckFailed(f"{bot_dir} is on {current!r}, not {branch!r}: git checkout {branch}")
    changes = output(host, bot_dir, "status", "--porcelain", "--untracked-files=no")
    if changes:
        raise CheckFailed(f"{bot_dir} has local changes (git status):\n{changes[:1000]}\n"
                          "commit, stash or discard them before deploying")
    fetched = git(host, bot_dir, "fetch", "--quiet", "origin")
    if fetched.rc != 0:
        raise CheckFailed(f"git fetch origin failed in {bot_dir}: {fetched.stderr.strip()[-300:]}")
    behind = int(output(host, bot_dir, "rev-list", "--count", "HEAD..@{u}"))
    if behind != 0:
        raise CheckFailed(f"{bot_dir} is {behind} commit(s) behind its remote: git pull origin {branch}")
    return {"Branch": current, "Behind Remote": behind}


def check_release(host: BotHost, bot_dir: str, release_ref: str, previous_ref: str | None) -> dict:
    """3.2: HEAD is the release; also records the commit to go back to (16.3)."""
    head = output(host, bot_dir, "rev-parse", "HEAD")
    wanted = git(host, bot_dir, "rev-parse", "--verify", "--quiet", f"{release_ref}^{{commit}}")
    if wanted.rc != 0:
        raise CheckFailed(f"{release_ref} is not a tag or commit in {bot_dir}: git fetch --tags origin")
    described = output(host, bot_dir, "describe", "--tags", "--always", "HEAD")
    if head != wanted.stdout.strip():
        raise CheckFailed(f"HEAD is {head[:12]} ({described}), not {release_ref} ({wanted.stdout.strip()[:12]}): "
                          f"git checkout {release_ref}")
    previous_ref = previous_ref or output(host, bot_dir, "describe", "--tags", "--abbrev=0", f"{release_ref}^")
    previous = output(host, bot_dir, "rev-parse", f"{previous_ref}^{{commit}}")
    return {"Commit": head, "Release": described, "Previous Commit": previous, "Previous Ref": previous_ref}


def check_file(host: BotHost, bot_dir: str, relative: str) -> dict:
    """3.3 / 3.4: a file of the release exists and is not empty."""
    found = host.file(f"{bot_dir.rstrip('/')}/{relative}")
    if not found.is_file:
        raise CheckFailed(f"{relative} not found in {bot_dir}: is the v0.7.0 code pulled?")
    size = found.size
    if size <= 0:
        raise CheckFailed(f"{relative} in {bot_dir} is empty")
    return {relative: f"{size} bytes"}


def find_document(host: BotHost, bot_dir: str, name: str) -> str:
    """Release documents sit at the top or under docs/ (the checklist's reference list uses both)."""
    for relative in (name, f"docs/{name}"):
        if host.file(f"{bot_dir.rstrip('/')}/{relative}").exists:
            return relative
    raise CheckFailed(f"release document {name} not found in {bot_dir} or its docs/ folder")


def check_out(host: BotHost, bot_dir: str, commit: str) -> str:
    """16.3: check the previous release out again; returns HEAD afterwards."""
    result = git(host, bot_dir, "checkout", "--quiet", commit)
    if result.rc != 0:
        raise CheckFailed(f"the checkout cannot go back to {commit[:12]}: {result.stderr.strip()[-400:]}; "
                          "resolve it (local changes?) and check out the previous release by hand")
    head = output(host, bot_dir, "rev-parse", "HEAD")
    if head != commit:
        raise CheckFailed(f"HEAD is {head[:12]} after the checkout, expected {commit[:12]}")
    return head
