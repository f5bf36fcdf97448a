"""PostgreSQL images for the container target, built on this machine from Debian's packages when no image
registry is reachable: a root filesystem made by mmdebstrap with the server and its contrib (pgcrypto),
imported into Docker, and an entry point that does what testcontainers' PostgreSQL module expects of an image
(POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB; `psql` inside for its readiness check) and listens on PGPORT,
since on the host network there are no published ports. Built once per version, tagged, reused.

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


class ImageError(CheckFailed):
    pass


def tag_of(version: int) -> str:
    """Tagged by version and by its entry point's content: a changed entry point is a new image."""
    return f"deploycheck/postgres:{version}-{hashlib.sha256(ENTRY.read_bytes()).hexdigest()[:8]}"


def _run(command: list[str], timeout: float, what: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ImageError(f"{what}: {command[0]} is not installed (Debian: apt-get install "
                         f"{'mmdebstrap' if command[0] == 'mmdebstrap' else 'docker.io'})") from None
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
