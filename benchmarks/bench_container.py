"""The rehearsal in containers against the embedded one, in one run: wall time of plain `pytest --target embedded`
and `pytest --target container` (the database through testcontainers, the bot in its own image under compose),
each cold (nothing built yet) and cached (the images there), image builds timed apart.

    ./run python benchmarks/bench_container.py              # starts a Docker daemon of its own (dockerd)
    DOCKER_HOST=unix:///... ./run python benchmarks/bench_container.py --daemon given

Prints figures, asserts nothing. Each rehearsal is a subprocess with its own --reports-dir and --deployment-id,
--bot-run-seconds 0 (the phases' own time, not the wait for the bot's jobs). "cold" for the container is a
daemon whose data folder is new: PostgreSQL's image, the Python base, the previous and the release's images are
built in that run; the figures of those builds are read from its output ("built X in N s"). The embedded
rehearsal's cold run builds the bot's virtualenv (in a cache folder of this run's: DEPLOYCHECK_CACHE)."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "selftest"))


def rehearse(target: str, folder: Path, env: dict, name: str) -> tuple[float, str, list[str]]:
    argv = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p", "deploycheck.pytest_plugin",
            "-p", "no:cacheprovider", "-q", "--target", target, "--bot-run-seconds", "0",
            "--reports-dir", str(folder / "reports"), "--deployment-id", name]
    began = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - began
    verdict = "GO" if done.returncode == 0 else f"NO-GO (exit {done.returncode})"
    if done.returncode != 0:  # a figure of a run that failed early means nothing: say why
        print(f"{target} {name}: the run's last lines:\n" + "\n".join((done.stdout + done.stderr).splitlines()[-15:]))
    builds = re.findall(r"built (\S+) in (\d+) s", done.stdout)
    return seconds, verdict, [f"{tag} {s} s" for tag, s in builds]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--daemon", choices=["own", "given"], default="own")
    args = parser.parse_args()
    import docker_daemon  # tests/selftest's: dockerd on a socket of its own, Compose v2 as its client's plugin
    with tempfile.TemporaryDirectory(prefix="bench-container-", ignore_cleanup_errors=True) as scratch:
        folder = Path(scratch)
        folder.chmod(0o755)  # as root the embedded server runs as a user of its own, which must reach its cache
        daemon = None
        if args.daemon == "own":
            cache = folder / "dockerd"   # a new data folder: the first container run is cold
            daemon = docker_daemon.start(cache, Path(tempfile.mkdtemp(prefix="dcd-", dir="/tmp")))
            env = {**os.environ, **daemon.env}
        else:
            env = dict(os.environ)
        env["DEPLOYCHECK_CACHE"] = str(folder / "cache")  # the bot's virtualenv: built in the cold runs only
        try:
            rows = []
            for run in ("cold", "cached"):
                for target in ("embedded", "container"):
                    seconds, verdict, builds = rehearse(target, folder / f"{target}-{run}", env,
                                                        f"bench-{target}-{run}")
                    rows.append((target, run, seconds, verdict, builds))
                    print(f"{target:9} {run:6} {seconds:6.1f} s  {verdict}" + (f"  builds: {', '.join(builds)}"
                                                                            if builds else ""), flush=True)
        finally:
            if daemon:
                docker_daemon.stop(daemon)
    cached = {target: seconds for target, run, seconds, _, _ in rows if run == "cached"}
    print(f"cached: the container rehearsal {cached['container']:.1f} s, the embedded {cached['embedded']:.1f} s "
          f"({cached['container'] / cached['embedded']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
