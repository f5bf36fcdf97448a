"""The bot's own environment: a virtualenv built from the checkout's requirements.txt, as the operator's
server has one, so a rehearsal runs the release with the packages it pins (not deploycheck's).

Kept under ~/.cache/deploycheck/venvs/<hash of requirements.txt and Python version>: the first rehearsal of a
release installs (a minute or two, progress shown), later ones start at once. A half-built environment is
never used: it is built in a temporary folder and renamed when pip succeeded.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

CACHE = Path(os.environ.get("DEPLOYCHECK_CACHE", Path.home() / ".cache" / "deploycheck")) / "venvs"
PIP_TIMEOUT = 1800


class BotEnvError(RuntimeError):
    pass


def interpreter(folder: Path) -> Path:
    return folder / "bin" / "python"


def key_of(requirements: Path, python: str = sys.executable) -> str:
    """The requirements' bytes and the Python that builds the environment: either changing means a new one."""
    version = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    return hashlib.sha256(requirements.read_bytes() + version.encode()).hexdigest()[:16]


def pip_errors(output: str, limit: int = 8) -> str:
    """pip's own words about what failed (its ERROR lines and what resolution said), not its whole log."""
    lines = [line.strip() for line in output.splitlines()
             if line.startswith(("ERROR", "error:")) or "No matching distribution" in line
             or "Could not find a version" in line or "conflict" in line.lower()]
    return "\n".join(lines[-limit:]) or "\n".join(output.strip().splitlines()[-limit:])


def ensure(checkout: Path, progress=print, python: str = sys.executable) -> Path:
    """The interpreter of an environment that satisfies checkout/requirements.txt, built if missing."""
    requirements = Path(checkout) / "requirements.txt"
    if not requirements.is_file():
        raise BotEnvError(f"{requirements} not found: the bot's environment is built from its requirements.txt")
    folder = CACHE / key_of(requirements, python)
    if interpreter(folder).exists():
        return interpreter(folder)
    building = folder.with_name(folder.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    progress(f"building the bot's environment from {requirements} (first time for these requirements; "
             f"cached in {folder})")
    venv.EnvBuilder(with_pip=True, clear=True).create(building)
    try:
        done = subprocess.run([str(interpreter(building)), "-m", "pip", "install", "--disable-pip-version-check",
                               "--no-input", "-r", str(requirements)], capture_output=True, text=True,
                              timeout=PIP_TIMEOUT, cwd=checkout)
    except subprocess.TimeoutExpired:
        shutil.rmtree(building, ignore_errors=True)
        raise BotEnvError(f"pip install -r {requirements} did not finish within {PIP_TIMEOUT} s") from None
    if done.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        raise BotEnvError(f"pip could not install the bot's requirements ({requirements}):\n"
                          f"{pip_errors(done.stdout + done.stderr)}\nFix requirements.txt, or give the "
                          "interpreter of a working environment with --bot-python")
    try:
        building.rename(folder)
    except OSError:  # another rehearsal built the same environment meanwhile: theirs is as good as ours
        shutil.rmtree(building, ignore_errors=True)
        if not interpreter(folder).exists():
            raise
    progress(f"the bot's environment is ready: {interpreter(folder)}")
    return interpreter(folder)
