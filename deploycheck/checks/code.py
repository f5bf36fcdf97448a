"""Code checks (3.1-3.4) and the code rollback (16.3): the bot checkout, through git on the host."""
from __future__ import annotations

import shlex


def git(host, bot_dir: str, *args: str, timeout: int = 60):
    command = " ".join(shlex.quote(a) for a in ("git", "-C", bot_dir, *args))
    return host.run(f"timeout {timeout} {command}")


def output(host, bot_dir: str, *args: str) -> str:
    result = git(host, bot_dir, *args)
    assert result.rc == 0, f"git {' '.join(args)} failed in {bot_dir}: {result.stderr.strip()[-300:]}"
    return result.stdout.strip()


def check_checkout(host, bot_dir: str, branch: str = "main") -> dict:
    """3.1: on the release branch, no local changes, not behind its remote (after a fetch)."""
    current = output(host, bot_dir, "rev-parse", "--abbrev-ref", "HEAD")
    assert current == branch, f"{bot_dir} is on {current!r}, not {branch!r}: git checkout {branch}"
    changes = output(host, bot_dir, "status", "--porcelain", "--untracked-files=no")
    assert not changes, (f"{bot_dir} has local changes (git status):\n{changes[:1000]}\n"
                         "commit, stash or discard them before deploying")
    fetched = git(host, bot_dir, "fetch", "--quiet", "origin")
    assert fetched.rc == 0, f"git fetch origin failed in {bot_dir}: {fetched.stderr.strip()[-300:]}"
    behind = int(output(host, bot_dir, "rev-list", "--count", "HEAD..@{u}"))
    assert behind == 0, f"{bot_dir} is {behind} commit(s) behind its remote: git pull origin {branch}"
    return {"Branch": current, "Behind Remote": behind}


def check_release(host, bot_dir: str, release_ref: str, previous_ref: str | None) -> dict:
    """3.2: HEAD is the release; also records the commit to go back to (16.3)."""
    head = output(host, bot_dir, "rev-parse", "HEAD")
    wanted = git(host, bot_dir, "rev-parse", "--verify", "--quiet", f"{release_ref}^{{commit}}")
    assert wanted.rc == 0, f"{release_ref} is not a tag or commit in {bot_dir}: git fetch --tags origin"
    described = output(host, bot_dir, "describe", "--tags", "--always", "HEAD")
    assert head == wanted.stdout.strip(), (f"HEAD is {head[:12]} ({described}), not {release_ref} "
                                           f"({wanted.stdout.strip()[:12]}): git checkout {release_ref}")
    previous_ref = previous_ref or output(host, bot_dir, "describe", "--tags", "--abbrev=0", f"{release_ref}^")
    previous = output(host, bot_dir, "rev-parse", f"{previous_ref}^{{commit}}")
    return {"Commit": head, "Release": described, "Previous Commit": previous, "Previous Ref": previous_ref}


def check_file(host, bot_dir: str, relative: str) -> dict:
    """3.3 / 3.4: a file of the release exists and is not empty."""
    path = f"{bot_dir.rstrip('/')}/{relative}"
    found = host.file(path)
    assert found.exists and found.is_file, f"{relative} not found in {bot_dir}: is the v0.7.0 code pulled?"
    assert found.size > 0, f"{relative} in {bot_dir} is empty"
    return {relative: f"{found.size} bytes"}


def find_document(host, bot_dir: str, name: str) -> str:
    """Release documents sit at the top or under docs/ (the checklist's reference list uses both)."""
    for relative in (name, f"docs/{name}"):
        if host.file(f"{bot_dir.rstrip('/')}/{relative}").exists:
            return relative
    raise AssertionError(f"release document {name} not found in {bot_dir} or its docs/ folder")
