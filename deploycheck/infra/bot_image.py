"""A release of the bot as an image, built here from the operator's checkout: the tree of the release's commit
(`git archive`, unmodified; their working tree, index and branches are never touched) built with its own
Dockerfile, as bot-auto-order's shops get their code (facts/bot-auto-order-docker.md).

No registry is reachable here, so a base image the Dockerfile names (FROM) and this daemon lacks is supplied
locally: the operator's replacement (`--base-image NAME=IMAGE`), else, for `python:*`, deploycheck's stand-in
built from Debian's packages (images.python_base); anything else is an error that says what to do. What each
base really was is recorded with the image, so a report never says python:3.12-slim when it was not. The base
names are tagged only for the build and untagged after it, so a later build or pull of the operator's never
takes deploycheck's stand-in for the real image.

Docker is driven through its CLI, not the docker SDK: the build's own output is what an operator needs when it
fails (the SDK streams it as JSON to reassemble), the CLI finds the daemon as their own commands do
(DOCKER_HOST, DOCKER_CONTEXT, DOCKER_CONFIG), and `docker compose`, which has no SDK, goes the same way.
"""
from __future__ import annotations

import json
import os
import shlex
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deploycheck.infra import images
from deploycheck.infra.images import ImageError, has_image

BUILD_TIMEOUT = 1200


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    id: str                 # sha256:...
    ref: str                # as given (v0.7.0)
    commit: str             # what it resolved to
    bases: dict[str, str]   # FROM name: what it really was
    seconds: float


def image_id(ref: str) -> str | None:
    """The image id (sha256:...) of a tag or id, None when the daemon has no such image."""
    done = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True,
                          text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else None


def inspect(ref: str) -> dict:
    """`docker image inspect` of one image, as a dict."""
    return json.loads(images._run(["docker", "image", "inspect", ref], 60, f"inspecting {ref}"))[0]


def from_names(dockerfile: str) -> list[str]:
    """The images a Dockerfile's FROM lines start from, in order, without its own stages (FROM builder) and
    scratch. A name built from an ARG (FROM python:${PY}) is left to docker."""
    names, stages = [], set()
    for match in re.finditer(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", dockerfile, re.M | re.I):
        name, alias = match.group(1), match.group(2)
        if name.lower() not in stages and name != "scratch" and "$" not in name and name not in names:
            names.append(name)
        if alias:
            stages.add(alias.lower())
    return names


def build_release(checkout: Path, ref: str, tag: str, bases: dict[str, str] | None = None,
                  say=print) -> BuiltImage:
    """The image `tag` of the checkout's tree at `ref` (a tag or commit), built with its Dockerfile on this
    daemon. `bases`: the operator's local image for a FROM name this daemon lacks (--base-image NAME=IMAGE)."""
    began = time.monotonic()
    commit = _commit(Path(checkout), ref)
    with tempfile.TemporaryDirectory(prefix="deploycheck-release-") as folder:
        context = Path(folder) / "context"
        context.mkdir()
        images._run(["git", "-C", str(checkout), "archive", "--format=tar", "-o", f"{folder}/tree.tar", commit],
                    120, f"taking {ref}'s tree from {checkout}")
        images._run(["tar", "-xf", f"{folder}/tree.tar", "-C", str(context)], 120, f"unpacking {ref}'s tree")
        dockerfile = context / "Dockerfile"
        if not dockerfile.is_file():
            raise ImageError(f"{checkout} at {ref} has no Dockerfile: a release image is built from the "
                             "checkout's own Dockerfile (bot-auto-order has one at its top); give a --release-ref "
                             "that has it")
        added: list[str] = []
        try:
            found = _supply_bases(from_names(dockerfile.read_text()), bases or {}, added, say)
            say(f"building {tag} from {ref} ({commit[:12]})")
            _build(context, tag)
        finally:
            for name in added:   # only the names tagged here; the built image keeps its layers
                subprocess.run(["docker", "rmi", "--no-prune", name], capture_output=True, timeout=60)
    seconds = time.monotonic() - began
    say(f"built {tag} in {seconds:.0f} s")
    return BuiltImage(tag, image_id(tag) or "", ref, commit, found, round(seconds, 1))


def _commit(checkout: Path, ref: str) -> str:
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise ImageError(f"{ref} is not a tag or commit of {checkout}: give the release's tag or commit")
    return done.stdout.strip()


def _supply_bases(names: list[str], given: dict[str, str], added: list[str], say) -> dict[str, str]:
    """Each FROM name present on the daemon, tagged from the operator's image or the stand-in. Returns what
    each one was; the names tagged here are appended to `added` (to untag after the build)."""
    found = {}
    stand_in = image_id(images.python_base_tag())
    for name in names:
        if given.get(name, name) != name:   # the operator's choice wins over whatever the name is here
            if not has_image(given[name]):
                raise ImageError(f"--base-image {name}={given[name]}: this Docker daemon has no image "
                                 f"{given[name]} (docker images lists what it has; docker load -i FILE adds one)")
            replacement, what = given[name], f"{given[name]} (given with --base-image, for {name})"
        elif (present := image_id(name)) is not None:
            found[name] = (f"{images.python_base_tag()} (stand-in from Debian {images.PYTHON_SUITE}'s python3 "
                           f"{images.PYTHON_VERSION}, not {name}; left tagged by an earlier run)"
                           if present == stand_in else f"{name} ({present[:19]}, on this daemon)")
            continue
        elif name.startswith("python:"):
            replacement = images.python_base(say)
            what = (f"{replacement} (stand-in from Debian {images.PYTHON_SUITE}'s python3 {images.PYTHON_VERSION}, "
                    f"not {name})")
            say(f"{name} is not here and no registry is reachable: building on {replacement} instead")
        else:
            raise ImageError(f"the Dockerfile starts FROM {name}, which this Docker daemon does not have and no "
                             f"registry is reachable to pull: give a local image for it with --base-image "
                             f"{name}=LOCAL_IMAGE, or load it first (docker save {name} on a machine that has it, "
                             "docker load -i FILE here)")
        images._run(["docker", "tag", replacement, name], 60, f"tagging {replacement} as {name}")
        found[name] = what
        added.append(name)
    return found


def _build(context: Path, tag: str) -> None:
    # The classic builder (as images.py and testcontainers build): BuildKit's host network needs an entitlement
    # the daemon may not grant. --network host: with Docker's bridge off, build steps have no network otherwise.
    # --force-rm: a failed step's container goes too (the classic builder keeps it by default).
    command = ["docker", "build", "--network", "host", "--force-rm", "-t", tag, str(context)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                              env={**os.environ, "DOCKER_BUILDKIT": "0"})
    except FileNotFoundError:
        raise ImageError("building the release image: docker is not installed (Debian: apt-get install "
                         "docker.io)") from None
    except subprocess.TimeoutExpired:
        raise ImageError(f"building {tag}: docker build did not finish within {BUILD_TIMEOUT} s (a step waiting "
                         "on the network? pip and apt reach PyPI and Debian's mirror over the host network)") from None
    if done.returncode != 0:
        stderr = done.stderr
        if stderr.startswith("DEPRECATED"):   # the classic builder's notice, up to its blank line
            stderr = stderr.split("\n\n", 1)[-1]
        errors = [line for line in stderr.splitlines() if line.strip()] or [f"exited with {done.returncode}"]
        raise ImageError(f"building {tag}: {errors[-1]}\n  docker build's last lines:\n  "
                         + "\n  ".join(done.stdout.strip().splitlines()[-12:] + errors[-6:-1]))


def existing(ref: str, host, name: str | None = None) -> BuiltImage:
    """An image the bot's host (infra.host.BotHost) already has: --release-image as pushed, or the one preflight
    built. By its id from now on: a tag may move."""
    found = host.run(f"docker image inspect --format '{{{{.Id}}}}' {shlex.quote(ref)}", timeout=60)
    if found.rc != 0 or not found.stdout.strip():
        said = found.stderr.strip()
        why = "" if not said or "no such image" in said.lower() else f" ({said[-200:]})"  # not docker's echo of it
        raise ImageError(f"no image {ref} on {host.name}{why}: pull or load it there (docker pull, docker load -i "
                         "FILE), or build it from the checkout (--bot-dir without --release-image)")
    return BuiltImage(name or ref, found.stdout.strip(), ref, "", {}, 0.0)
