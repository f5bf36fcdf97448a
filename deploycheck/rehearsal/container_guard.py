"""The outbound guard in every Python process of a rehearsal's container, its image unmodified and its own
entry point kept (issue 26): the bot's two processes run_stack.sh starts, the compose health check Docker
execs every 5 minutes (a raw-httpx getMe at api.telegram.org in bot-auto-order), and anything run with
`docker exec ... python`. Telegram and Pakasir go to the fakes, everything else is refused and listed in a
file on this machine, as behind the launcher (deploycheck.telegram.outbound_guard says how and why).

How: a folder of deploycheck's is mounted read-only into the container and put first on its PYTHONPATH. It holds
a `sitecustomize.py`, which Python's own start-up (the site module) imports in every interpreter before any
code of the bot runs, and copies of the two modules it needs, the guard and the launcher's PTB redirect (both
use the standard library only, so nothing of deploycheck is installed in the image). The refusals' file sits in
a folder mounted at the same path as on this machine, so the rehearsal reads it where the guard wrote it.

Why this way:
- Docker has no hook that runs code in each process of a container. Replacing the entry point would guard the
  processes it starts, not the health check Docker execs beside them.
- A `.pth` file would do the same job, but Python reads those only in its site-packages folders, which are the
  image's; PYTHONPATH is the one place the container's settings can add.
- An image with a sitecustomize of its own (Debian's python3 ships one) keeps it: ours shadows it, so it runs
  it after the guard is in place.
- The guard fails closed: a process where it cannot be installed stops at once (exit 70) with why, rather than
  run unguarded.
- Not a network namespace or firewall rules: the rehearsal runs on the host network without privileges, and
  those would record nothing of what was refused.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from deploycheck.infra import bot_image, images
from deploycheck.infra.images import ImageError
from deploycheck.telegram import launcher, outbound_guard

MOUNT = "/opt/deploycheck-guard"   # where the folder is in the container
FAILED_CLOSED = 70                 # the exit status of a process whose guard could not be installed
DOCKER_TIMEOUT = 60

SITECUSTOMIZE = f'''\
"""deploycheck's outbound guard, put in every Python process of this container by a rehearsal: the folder
{MOUNT} is first on PYTHONPATH (deploycheck/rehearsal/container_guard.py)."""
import os
import sys

try:
    from deploycheck.telegram import launcher, outbound_guard
    if outbound_guard.install_from_env():
        try:
            launcher.point_ptb_at(os.environ["DEPLOYCHECK_BOT_API_URL"])
        except ImportError:  # a process without python-telegram-bot: the guard alone
            pass
except BaseException as exc:  # noqa: BLE001 (fail closed: an unguarded process could reach the internet)
    sys.stderr.write(f"deploycheck outbound guard not installed, so this process is stopped: {{exc}}\\n")
    sys.stderr.flush()
    os._exit({FAILED_CLOSED})

# the image's own sitecustomize, which this one shadows
import importlib.machinery
import importlib.util

_here = os.path.dirname(os.path.abspath(__file__))
_theirs = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != _here])
if _theirs is not None and _theirs.loader is not None:
    _theirs.loader.exec_module(importlib.util.module_from_spec(_theirs))
'''

# The Python processes in the container, [pid, command line] as its /proc has them, listed by its own Python
# (guarded too: its own pid is left out).
PROCESSES = """\
import json, os
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
    except OSError:
        continue
    argv = [a.decode(errors="replace") for a in argv if a]
    if argv and "python" in os.path.basename(argv[0]) and int(pid) != os.getpid():
        found.append([int(pid), " ".join(argv)])
print(json.dumps(found))
"""


def lay_out(folder: Path) -> Path:
    """folder/guard (mounted read-only at MOUNT) and folder/outbound (mounted where it is) with the refusals'
    file; returns folder."""
    guard = Path(folder) / "guard"
    package = guard / "deploycheck" / "telegram"
    package.mkdir(parents=True, exist_ok=True)
    (guard / "deploycheck" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")  # not deploycheck's: that one imports the fake Bot API
    for module in (launcher, outbound_guard):
        shutil.copy(module.__file__, package / Path(module.__file__).name)
    (guard / "sitecustomize.py").write_text(SITECUSTOMIZE)
    outbound = Path(folder) / "outbound"
    outbound.mkdir(exist_ok=True)
    outbound.chmod(0o777)  # the image's user, whoever it is, writes the refusals here
    return Path(folder)


@dataclass
class ContainerGuard:
    """The guard of one rehearsal's container: its settings and mounts for the tenant, and the proof (14.2+outbound)
    that every Python process there had it."""
    folder: Path
    routes: dict[str, str]
    api_url: str

    @property
    def refused_log(self) -> Path:
        return self.folder / "outbound" / "refused.jsonl"

    def settings(self, image_pythonpath: str = "") -> dict[str, str]:
        """What goes in the container's environment (bot.env): the guard first on its path, the image's after."""
        path = MOUNT + (f":{image_pythonpath}" if image_pythonpath else "")
        return {**outbound_guard.environment(self.routes, [], self.refused_log), "PYTHONPATH": path,
                "DEPLOYCHECK_BOT_API_URL": self.api_url}

    def volumes(self) -> list[str]:
        outbound = self.folder / "outbound"
        return [f"{self.folder / 'guard'}:{MOUNT}:ro", f"{outbound}:{outbound}"]

    def check(self, container: dict) -> tuple[int, list[dict], list[dict]]:
        """(processes, guarded, refused) of a container (`docker inspect`'s dict): its compose health check run
        once now as Docker runs it, then every Python process in it and that health check, each matched to the
        guard's "installed" line of its pid and command; and everything refused since its first start."""
        name, checked = container["Name"].lstrip("/"), []
        health = health_check(container["Config"])
        if health:
            with contextlib.suppress(ImageError):  # a failing health check still wrote its guard's line
                images._run(["docker", "exec", name, *health], DOCKER_TIMEOUT, f"the health check of {name}")
            said = " ".join(health)
            if "python" in said:  # a health check of curl has no Python process to guard
                checked.append((None, said))
        listed = images._run(["docker", "exec", name, "python", "-c", PROCESSES], DOCKER_TIMEOUT,
                             f"listing the Python processes of {name}")
        checked += [(pid, command) for pid, command in json.loads(listed or "[]")]
        installed, refused = outbound_guard.read_log(self.refused_log)

        def guard_of(pid, command):  # the health check's pid is gone: its Python's command is in its own
            return next((r for r in installed if r.get("command") and (
                (r.get("pid"), r["command"]) == (pid, command) if pid else r["command"] in command)), None)

        found = [guard_of(pid, command) for pid, command in checked]
        return len(checked), [record for record in found if record], refused


def image_pythonpath(image: str) -> str:
    """The PYTHONPATH the image sets, if any (kept after the guard's folder)."""
    env = bot_image.inspect(image)["Config"].get("Env") or []
    return next((e.split("=", 1)[1] for e in env if e.startswith("PYTHONPATH=")), "")


def health_check(config: dict) -> list[str] | None:
    """The health check command of a container's config (`docker inspect`'s Config) as Docker runs it."""
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if test[:1] == ["CMD"]:
        return test[1:]
    if test[:1] == ["CMD-SHELL"]:
        return ["/bin/sh", "-c", test[1]]
    return None
