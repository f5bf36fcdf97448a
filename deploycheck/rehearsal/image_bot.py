"""The release image's bot in a throwaway container on this machine (5.3+release in a Docker shop): its own
entry point, on the host network (the fakes and the migrated copy are on 127.0.0.1), its settings in an
env file of mode 0600 (never on a command line: `ps` shows those), removed when stopped. The same interface as
botprocess.BotProcess: start(), await wait_ready(), await stop(), log_text()."""
from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from deploycheck.infra import targets
from deploycheck.rehearsal.botprocess import BotStartError

DOCKER_TIMEOUT = 120
LABEL = "deploycheck.release-trial"


class ImageBot:
    def __init__(self, image: str, env: dict[str, str], token: str, polled, folder: Path, volumes: list[str] = ()):
        self.image, self.env, self.token, self.polled, self.volumes = image, env, token, polled, list(volumes)
        self.folder, self.name = Path(folder), f"deploycheck-trial-{uuid.uuid4().hex[:8]}"
        self.started_at = 0.0

    def _docker(self, *args: str, timeout: float = DOCKER_TIMEOUT) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BotStartError(f"docker {args[0]} did not answer: {exc}") from None

    def start(self) -> "ImageBot":
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, env_file = tempfile.mkstemp(dir=self.folder, prefix="trial-", suffix=".env")  # mode 0600
        with os.fdopen(fd, "w") as out:
            out.writelines(f"{k}={v}\n" for k, v in self.env.items() if "\n" not in str(v))
        self.started_at = time.monotonic()
        labels = [f"--label={k}={v}" for k, v in {LABEL: "", **targets.run_label()}.items()]  # gone at exit too
        done = self._docker("run", "-d", "--network", "host", "--name", self.name, *labels,
                            "--env-file", env_file, *(f"--volume={v}" for v in self.volumes), self.image)
        os.unlink(env_file)
        if done.returncode != 0:
            raise BotStartError(f"the release image {self.image} did not start: {done.stderr.strip()[-800:]}")
        return self

    def log_text(self) -> str:
        done = self._docker("logs", self.name)
        text = done.stdout + done.stderr
        return text.replace(self.token, "<token>") if self.token else text

    def _state(self) -> str:
        return self._docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", self.name).stdout.strip()

    async def wait_ready(self, timeout: float = 60) -> float:
        """Until its first getUpdates reaches the fake; a container that exits first fails with its last lines."""
        while time.monotonic() - self.started_at < timeout:
            if self.polled(self.started_at):
                return time.monotonic() - self.started_at
            state = await asyncio.to_thread(self._state)
            if not state.startswith("running"):
                raise BotStartError(f"the release image's container {state or 'is gone'} (status, exit code); its "
                                    f"output ends with:\n{self.log_text()[-1500:]}")
            await asyncio.sleep(0.5)
        raise BotStartError(f"the release image's bot did not poll the fake Telegram within {timeout:g} s; its "
                            f"output ends with:\n{self.log_text()[-1500:]}")

    async def stop(self, timeout: float = 15.0) -> None:
        await asyncio.to_thread(self._docker, "rm", "-f", "-v", self.name)
