"""PostgreSQL images for the container target, built on this machine from Debian's packages when no image
registry is reachable: a root filesystem made by mmdebstrap with the server and its contrib (pgcrypto),
imported into Docker, and an entry point that does what testcontainers' PostgreSQL module expects of an image
(POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB; `psql` inside for its readiness check) and listens on PGPORT,
since on the host network there are no published ports. Built once per version, tagged, reused.

Also the stand-in for `python:3.12-slim` that bot-auto-order's Dockerfile starts from (`python_base`): Debian
bookworm's Python 3.11 with pip, made to look like the official image where a Dockerfile notices (python and
pip in /usr/local/bin, pip allowed to install, /usr/local's site-packages searched); see
shared/facts/bot-auto-order-docker.md. An image built on it says so (bot_image.BuiltImage.bases).

mmdebstrap and `docker import` are driven as commands: the docker SDK has no import of a tarball stream that
is simpler, and mmdebstrap is Debian's own tool."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from deploycheck.failure import CheckFailed

# The PostgreSQL major versions a Debian stable release ships (16 and 18 are in none: give --pg-image).
SUITES = {15: "bookworm", 17: "trixie"}
ENTRY = Path(__file__).with_name("postgres-entry.sh")
BUILD_TIMEOUT = 900

PYTHON_SUITE = "bookworm"
PYTHON_PACKAGES = ("python3-pip", "python3-venv", "ca-certificates")
PYTHON_VERSION = "3.11"                      # bookworm's python3
PYTHON_PIP = "pip==26.3"                     # from PyPI, see below
MACHINE_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# After FROM the imported root filesystem. Why each step:
# - the machine's CA bundle: this machine trusts an authority Debian's bundle lacks, so pip inside a build
#   fails with CERTIFICATE_VERIFY_FAILED without it (a second copy under /usr/local/share/ca-certificates
#   keeps it if a later step runs update-ca-certificates);
# - EXTERNALLY-MANAGED removed: the official image's pip installs system-wide, Debian's refuses to;
# - pip from PyPI, as the official image has: Debian's pip puts `--prefix=/install` under /install/local/
#   (its posix_local scheme), so `COPY --from=builder /install /usr/local` would land in /usr/local/local;
#   PyPI's pip uses /install/lib/python3.X/site-packages, as on the official image (pinned: the image's
#   tag is its recipe);
# - python (and pip, by the step above) in /usr/local/bin, where the official image has them;
# - the .pth: those packages end up in /usr/local/lib/python3.X/site-packages, which Debian's Python does
#   not search (it has dist-packages); without it the image builds and then fails with "No module named
#   'telegram'".
PYTHON_STEPS = f"""\
COPY machine-ca.crt /etc/ssl/certs/ca-certificates.crt
COPY machine-ca.crt /usr/local/share/ca-certificates/deploycheck-machine.crt
RUN rm -f /usr/lib/python{PYTHON_VERSION}/EXTERNALLY-MANAGED \\
 && python3 -m pip install --no-cache-dir --root-user-action=ignore {PYTHON_PIP} \\
 && test -x /usr/local/bin/pip \\
 && ln -sf /usr/bin/python3 /usr/local/bin/python \\
 && mkdir -p /usr/local/lib/python{PYTHON_VERSION}/site-packages \\
 && echo /usr/local/lib/python{PYTHON_VERSION}/site-packages \\
    > /usr/lib/python3/dist-packages/deploycheck-usr-local.pth
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
CMD ["python3"]
"""


class ImageError(CheckFailed):
    pass


def tag_of(version: int) -> str:
    """Tagged by version and by its entry point's content: a changed entry point is a new image."""
    return f"deploycheck/postgres:{version}-{hashlib.sha256(ENTRY.read_bytes()).hexdigest()[:8]}"


def _run(command: list[str], timeout: float, what: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        package = {"mmdebstrap": "mmdebstrap", "git": "git", "tar": "tar"}.get(command[0], "docker.io")
        raise ImageError(f"{what}: {command[0]} is not installed (Debian: apt-get install {package})") from None
    except subprocess.TimeoutExpired:
        raise ImageError(f"{what}: {command[0]} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()[-8:]
        raise ImageError(f"{what}: {' '.join(command[:2])} exited with {done.returncode}:\n  " + "\n  ".join(lines))
    return done.stdout


def has_image(tag: str, docker: str = "docker") -> bool:
    return subprocess.run([docker, "image", "inspect", tag], capture_output=True).returncode == 0


def can_build(version: int) -> bool:
    return version in SUITES and shutil.which("mmdebstrap") is not None


def postgres_image(version: int, say=print) -> str:
    """The local image of PostgreSQL `version`: deploycheck's own when it exists, else built now from Debian's
    packages (progress and the time it took said). Another version needs the operator's --pg-image."""
    tag = tag_of(version)
    if has_image(tag):
        return tag
    if version not in SUITES:
        raise ImageError(f"no PostgreSQL {version} image here, and Debian's stable releases ship only "
                         f"{', '.join(map(str, SUITES))}: give your own image with --pg-image IMAGE (one that "
                         "honours POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB and PGPORT), or use --pg-version 15")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="deploycheck-pg-image-") as folder:
        root = Path(folder) / "rootfs.tar"
        say(f"building {tag} from Debian {SUITES[version]}'s postgresql-{version} (mmdebstrap; about a minute)")
        _run(["mmdebstrap", "--variant=apt", f"--include=postgresql-{version},postgresql-contrib-{version}",
              SUITES[version], str(root)], BUILD_TIMEOUT, f"building {tag}")
        base = f"{tag}-base"
        _run(["docker", "import", str(root), base], BUILD_TIMEOUT, f"importing {tag}'s base")
        shutil.copy(ENTRY, Path(folder) / "entry.sh")
        (Path(folder) / "Dockerfile").write_text(
            f"FROM {base}\nCOPY entry.sh /usr/local/bin/entry.sh\nRUN chmod 755 /usr/local/bin/entry.sh\n"
            f"ENV PATH=/usr/lib/postgresql/{version}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            f"\nENV PG_MAJOR={version}\nCMD [\"/usr/local/bin/entry.sh\"]\n")
        # the classic builder: no BuildKit syntax, as testcontainers' own DockerImage builds
        _run(["docker", "build", "-q", "-t", tag, folder], BUILD_TIMEOUT, f"building {tag}")
    say(f"built {tag} in {time.monotonic() - began:.0f} s")
    return tag


def python_base_tag() -> str:
    """Tagged by its recipe and the machine's CA bundle: either changed is a new image."""
    recipe = hashlib.sha256(f"{PYTHON_SUITE} {PYTHON_PACKAGES} {PYTHON_STEPS}".encode())
    recipe.update(MACHINE_CA.read_bytes() if MACHINE_CA.exists() else b"")
    return f"deploycheck/python-base:{PYTHON_SUITE}-{recipe.hexdigest()[:8]}"


def python_base(say=print) -> str:
    """The local stand-in for python:3.12-slim (Debian bookworm's Python 3.11, PyPI's pip): deploycheck's own
    when it exists, else built now from Debian's packages (about half a minute)."""
    tag = python_base_tag()
    if has_image(tag):
        return tag
    if shutil.which("mmdebstrap") is None:
        raise ImageError(f"no {tag} here and mmdebstrap is missing to build it (Debian: apt-get install "
                         "mmdebstrap), or give the release's base yourself: --base-image python:3.12-slim=LOCAL_IMAGE")
    if not MACHINE_CA.exists():
        raise ImageError(f"building {tag}: {MACHINE_CA} is missing (Debian: apt-get install ca-certificates); "
                         "pip inside the image needs the certificate authorities this machine trusts")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="deploycheck-python-base-") as folder:
        root = Path(folder) / "rootfs.tar"
        say(f"building {tag} from Debian {PYTHON_SUITE}'s python3 (mmdebstrap; about half a minute)")
        _run(["mmdebstrap", "--variant=apt", f"--include={','.join(PYTHON_PACKAGES)}", PYTHON_SUITE, str(root)],
             BUILD_TIMEOUT, f"building {tag}")
        base = f"{tag}-rootfs"
        _run(["docker", "import", str(root), base], BUILD_TIMEOUT, f"importing {tag}'s root filesystem")
        shutil.copy(MACHINE_CA, Path(folder) / "machine-ca.crt")
        (Path(folder) / "Dockerfile").write_text(f"FROM {base}\n{PYTHON_STEPS}")
        # --network host: pip reaches PyPI (with Docker's bridge off, build steps have no network otherwise)
        _run(["docker", "build", "-q", "--network", "host", "--force-rm", "-t", tag, folder], BUILD_TIMEOUT,
             f"building {tag}")
        _run(["docker", "rmi", base], 60, f"removing {tag}'s root filesystem image")  # its layer stays, under tag
    say(f"built {tag} in {time.monotonic() - began:.0f} s")
    return tag
