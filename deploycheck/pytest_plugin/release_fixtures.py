"""The release as the checklist lines that run its code see it (`release`: infra.release's Checkout or Image),
and in a Docker shop the release image itself (`release_image`). A pytest plugin module, registered by
deploycheck.pytest_plugin."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploycheck.failure import CheckFailed
from deploycheck.infra import bot_image, compose
from deploycheck.infra.release import Checkout, Image

IMAGE_ITEM = "3.2+image"


def _bases(option) -> dict[str, str]:
    bases = {}
    for given in option.base_image:
        name, sep, image = given.partition("=")
        if not sep or not name or not image:
            pytest.fail(f"--base-image {given!r}: give NAME=IMAGE, e.g. --base-image python:3.12-slim=my/python:3.12",
                        pytrace=False)
        bases[name] = image
    return bases


def release_tag(ref: str) -> str:
    """The tag deploycheck gives an image it builds from the checkout: bot-auto-order:<ref>."""
    return "bot-auto-order:" + (re.sub(r"[^A-Za-z0-9_.-]", "-", ref).lstrip(".-") or "release")


@pytest.fixture(scope="session")
def release_image(request, deployment, host, progress_line) -> bot_image.BuiltImage | None:
    """A Docker shop's release: --release-image as pushed, else the image this deployment's preflight built (its
    id in the ledger, so the window deploys what preflight checked), else built now from --bot-dir's own
    Dockerfile at --release-ref, unmodified. None for a shop that runs a checkout."""
    if deployment.bot != "image":
        return None
    option = request.config.option
    # Docker not answering is said as every Docker step says it (the service's 1.2 too: one fault), not as
    # "no such image" or a failed build of a base it could not look for.
    compose.check_docker(host)
    try:
        if deployment.release_image:
            return bot_image.existing(deployment.release_image, host)
        built = deployment.ledger.latest(IMAGE_ITEM)
        if built and built["evidence"].get("Image Id"):  # what preflight checked, whatever the tag names now
            return bot_image.existing(built["evidence"]["Image Id"], host, name=built["evidence"].get("Image"))
        checkout = request.getfixturevalue("bot_dir") if deployment.rehearsal else deployment.bot_dir
        if not checkout:
            pytest.fail("a Docker shop's release is an image: give --release-image IMAGE, or --bot-dir with the "
                        "release's checkout to build it from its own Dockerfile", pytrace=False)
        if not host.is_this_machine():
            pytest.fail(f"building the release image needs Docker on this machine, and the bot's host is {host.name}: "
                        "build and push it, then give --release-image", pytrace=False)
        return bot_image.build_release(Path(checkout), option.release_ref, release_tag(option.release_ref),
                                       _bases(option), progress_line)
    except CheckFailed as exc:
        pytest.fail(f"the release image: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def release(request, deployment, release_image) -> Checkout | Image:
    """Where the release's code is run by 1.5, 5.3, 7.3 and 9.x: the checkout with the bot's Python, or in a
    Docker shop the release image (by its id: the tag may move)."""
    if release_image is not None:
        return Image(release_image.id, release_image.tag)
    return Checkout(request.getfixturevalue("bot_dir"), request.getfixturevalue("bot_python"))
