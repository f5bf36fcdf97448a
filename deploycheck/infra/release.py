"""Where the release's code is, for the checklist lines that run it (1.5's Python, 5.3's and 7.3's runner,
9.1's dependencies, 9.3's caches): a checkout on the bot's host with the bot's Python beside it, or, in a Docker
shop, the release image. A check builds its command once; `shell` says where it runs, so no check asks which."""
from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class Checkout:
    """The checkout on the host (the checklist's `cd /path/to/bot-auto-order` and its venv)."""

    folder: str
    python: str
    kind = "checkout"

    @property
    def where(self) -> str:
        return f"{self.folder} with {self.python}"

    def shell(self, command: str) -> str:
        return command


@dataclass(frozen=True)
class Image:
    """The release image: each command in a throwaway container of it (`docker run --rm`), on the host network
    (Docker's bridge is off on such hosts, and the database is reached as the bot reaches it), its standard
    input passed on (the runner's settings come that way, never on a command line)."""

    image: str           # the id (sha256:...) where known: a tag may move
    name: str            # what the operator calls it (the tag)
    folder: str = "/app"  # the Dockerfile's WORKDIR, where `COPY . .` put the checkout
    python: str = "python"
    kind = "image"

    @property
    def where(self) -> str:
        return f"the image {self.name} ({self.image[:19]})" if self.image != self.name else f"the image {self.name}"

    def shell(self, command: str) -> str:
        return (f"docker run --rm -i --network host --entrypoint sh {shlex.quote(self.image)} "
                f"-c {shlex.quote(command)}")
