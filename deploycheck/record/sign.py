"""Sign the deployment record for one sign-off role: `python -m deploycheck sign`.

Every signature is SSHSIG in the namespace "deploycheck", checked by one path (trust.py, through `sshsig`), and
by `ssh-keygen -Y verify` by hand (sigfile.py). Keys:

- an OpenSSH key (private, or a .pub whose private half is in ssh-agent) signs through
  `ssh-keygen -Y sign -n deploycheck`, the way git signs commits;
- a raw Ed25519 PEM key (PKCS#8, via `cryptography`) signs in this process into the same SSHSIG format, built
  with sshsig's own SSHSIG classes. Not converted to an OpenSSH key for ssh-keygen: that would write the
  decrypted private key to a file, and an encrypted one would need its passphrase typed to ssh-keygen.

Both store the public key in OpenSSH form, so one allowed_signers file (git's format:
`identity [namespaces="deploycheck"] ssh-ed25519 AAAA...`) vouches for either.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from sshsig.binary_io import SshWriter
from sshsig.sshsig import SshsigWrapper, ssh_enarmor_sshsig

from deploycheck.record import folder as rec
from deploycheck.record import render, trust
from deploycheck.record.sigfile import (  # noqa: F401 (SigningError, RefusedError, read_signature_file: the API)
    DISTINCT, NAMESPACE, SIGNATURE_TYPE, RefusedError, SigningError, read_signature_file, render_signature,
    same_person, statement_bytes)
from deploycheck.record.verify import verify

PASSPHRASE_ENV = "DEPLOYCHECK_KEY_PASSPHRASE"
TIMEOUT = 120  # seconds; long enough to type a key passphrase


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def os_identity() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def ssh_keygen() -> str:
    path = shutil.which("ssh-keygen")
    if not path:
        raise SigningError("ssh-keygen not found on PATH: install OpenSSH's client tools "
                           "(Debian/Ubuntu: apt-get install openssh-client), or sign with a raw Ed25519 PEM key")
    return path


def run(args: list[str], what: str, data: bytes | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, input=data, capture_output=True, timeout=TIMEOUT,
                              stdin=None if data is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SigningError(f"{what}: ssh-keygen gave no answer in {TIMEOUT}s (waiting for a passphrase? "
                           "load the key into ssh-agent and pass its .pub)") from None


# ------------------------------------------------------------------ keys

def detect_key(path: Path) -> str:
    """'ssh' (OpenSSH private or public key) or 'ed25519' (PKCS#8 PEM), from the file's first line."""
    path = Path(path)
    try:
        head = path.read_text(encoding="utf-8", errors="replace").lstrip()[:200]
    except FileNotFoundError:
        raise SigningError(f"key file {path} not found; pass --key with the path of your private key") from None
    except IsADirectoryError:
        raise SigningError(f"--key {path} is a directory; expected a key file") from None
    if head.startswith(("-----BEGIN OPENSSH PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----",
                        "-----BEGIN EC PRIVATE KEY-----")) or head.split(" ", 1)[0] in (
            "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
            "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"):
        return "ssh"
    if head.startswith(("-----BEGIN PRIVATE KEY-----", "-----BEGIN ENCRYPTED PRIVATE KEY-----")):
        return "ed25519"
    raise SigningError(f"{path} is not a key deploycheck can use: expected an OpenSSH key "
                       "(-----BEGIN OPENSSH PRIVATE KEY----- or a .pub held by ssh-agent) or an Ed25519 PEM key "
                       "(-----BEGIN PRIVATE KEY-----); found a file starting with "
                       f"{head.splitlines()[0][:40] if head else 'nothing'!r}")


def ssh_key_info(path: Path) -> tuple[str, str | None]:
    """(fingerprint, comment) via `ssh-keygen -l`; needs no passphrase (the public half is not encrypted)."""
    out = run([ssh_keygen(), "-l", "-E", "sha256", "-f", str(path)], "reading the key")
    if out.returncode != 0:
        raise SigningError(f"ssh-keygen cannot read the key {path}: {out.stderr.decode(errors='replace').strip()}")
    parts = out.stdout.decode(errors="replace").split()  # "256 SHA256:... comment words (ED25519)"
    comment = " ".join(parts[2:-1]) if len(parts) > 3 else ""
    return parts[1], (comment if comment and comment != "no comment" else None)


def load_ed25519(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = Path(path).read_bytes()
    password = None
    if b"ENCRYPTED" in data.split(b"\n", 1)[0]:
        secret = os.environ.get(PASSPHRASE_ENV)
        if secret is None and sys.stdin.isatty():
            secret = getpass.getpass(f"passphrase for {path}: ")
        if secret is None:
            raise SigningError(f"{path} is encrypted: set {PASSPHRASE_ENV} or run from a terminal to type it")
        password = secret.encode()
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"cannot load the PEM key {path} ({exc}); wrong passphrase, or not a private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path} is a {type(key).__name__.replace('_', '')} PEM key; raw PEM keys must be Ed25519 "
                           "(for RSA/ECDSA, use an OpenSSH key: ssh-keygen -t ed25519)")
    return key


def openssh_public(public_key) -> str:
    from cryptography.hazmat.primitives import serialization
    return public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()



def fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of 'type base64' (the same string `ssh-keygen -l` prints)."""
    return trust.sshsig.PublicKey.from_openssh_str(public_key).sha256_str()


# ------------------------------------------------------------------ signing

def sshsig_ed25519(key, data: bytes) -> str:
    """An armored SSHSIG signature of `data` by a raw Ed25519 key, as `ssh-keygen -Y sign` would make it."""
    public_blob = base64.b64decode(openssh_public(key.public_key()).split()[1])  # the key's SSH wire form
    signed = SshsigWrapper(namespace=NAMESPACE.encode(), hash_algo=b"sha512",
                           hash=hashlib.sha512(data).digest()).to_bytes()
    inner, outer = io.BytesIO(), io.BytesIO()
    SshWriter(inner).write_string(b"ssh-ed25519")
    SshWriter(inner).write_string(key.sign(signed))
    writer = SshWriter(outer)  # PROTOCOL.sshsig: magic, version 1, key, namespace, reserved, hash, signature
    writer.write(b"SSHSIG")
    writer.write_uint32(1)
    for part in (public_blob, NAMESPACE.encode(), b"", b"sha512", inner.getvalue()):
        writer.write_string(part)
    return ssh_enarmor_sshsig(outer.getvalue())


def ssh_keygen_sign(key_path: Path, data: bytes) -> str:
    tool = ssh_keygen()
    with tempfile.TemporaryDirectory(prefix="deploycheck-sign-") as tmp:
        message = Path(tmp) / "record-signoff"
        message.write_bytes(data)
        # Data in a file, not on stdin, so ssh-keygen can still ask for a passphrase on the terminal.
        out = run([tool, "-Y", "sign", "-n", NAMESPACE, "-f", str(key_path), str(message)], "signing")
        if out.returncode != 0:
            raise SigningError(f"ssh-keygen -Y sign failed with {key_path}: "
                               f"{out.stderr.decode(errors='replace').strip() or 'no message'} (an encrypted key "
                               "needs a terminal to type its passphrase; or load it with ssh-add and pass its .pub)")
        return message.with_name(message.name + ".sig").read_text()


def sign_bytes(key_path: Path, data: bytes) -> dict:
    """Sign `data` into SSHSIG; returns algorithm, public_key, key_fingerprint, signature, read back from the
    signature through trust.py (so an unsupported key type fails here, not at verify)."""
    if detect_key(key_path) == "ed25519":
        armored = sshsig_ed25519(load_ed25519(key_path), data)
    else:
        armored = ssh_keygen_sign(key_path, data)
    info = trust.sshsig_info(armored)
    return {"algorithm": info["algorithm"], "public_key": info["public_key"], "key_fingerprint": info["fingerprint"],
            "signature": armored}


def refuse_signing(folder: Path, record: dict, role: str, force: bool) -> None:
    """Refuse a record that does not verify, and a role already signed for this record (unless `force`)."""
    check = verify(folder.parent, folder.name, check_signatures=False)
    if not check.ok:
        raise RefusedError(f"refusing to sign: the record does not verify ({check.problems[0][0]}: "
                           f"{check.problems[0][1]}); rebuild it with `python -m deploycheck record {folder.name}`")
    path = folder / rec.SIGNATURES / f"{role}.json"
    if path.exists() and not force:
        try:
            old = read_signature_file(path)
        except SigningError:
            return
        if old["record_sha256"] == rec.record_digest(record):
            raise RefusedError(f"{role} already signed this record ({old['signer']}, {old['signed_at']}); "
                               "pass --force to replace that signature")


def sign(reports_dir: Path, deployment_id: str, role: str, key: Path, identity: str | None = None, *,
         force: bool = False, now: str | None = None) -> Path:
    """Sign record.json for `role`; returns the signature file. Refuses a record that does not verify."""
    folder = rec.deployment_folder(Path(reports_dir), deployment_id)
    record = rec.load_record(folder)
    roles = {r["slug"]: r["role"] for r in record["signoff"]}
    if role not in roles:
        raise SigningError(f"--role {role}: expected one of {', '.join(roles)}")
    refuse_signing(folder, record, role, force)
    digest = rec.record_digest(record)
    kind = detect_key(key)
    source, signer = "--identity", identity
    if not signer and kind == "ssh":
        signer, source = ssh_key_info(key)[1], "key comment"
    if not signer:
        signer, source = os_identity(), "OS user"
    sig = {"type": SIGNATURE_TYPE, "deployment_id": deployment_id, "role": role, "role_title": roles[role],
           "signer": signer, "identity_source": source, "signed_at": now or utcnow(), "record": rec.RECORD_JSON,
           "record_sha256": digest, "key_type": "ssh" if kind == "ssh" else "ed25519-pem"}
    # The fingerprint is part of what is signed, so it is read from the key before signing.
    sig["key_fingerprint"] = (ssh_key_info(key)[0] if kind == "ssh"
                              else fingerprint(openssh_public(load_ed25519(key).public_key())))
    refuse_same_person(folder, role, sig, digest)
    payload = statement_bytes(sig)
    signed = sign_bytes(key, payload)
    if signed["key_fingerprint"] != sig["key_fingerprint"]:
        raise SigningError(f"{key}: the key changed while signing (agent?); try again")
    sig.update(signed, payload=payload.decode())
    path = folder / rec.SIGNATURES / f"{role}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render_signature(sig))
    render.write_html(folder, record)
    return path


def refuse_same_person(folder: Path, role: str, sig: dict, digest: str) -> None:
    for first, second in DISTINCT:
        other = second if role == first else first if role == second else None
        if other is None:
            continue
        path = folder / rec.SIGNATURES / f"{other}.json"
        if not path.exists():
            continue
        try:
            existing = read_signature_file(path)
        except SigningError:
            continue  # verify reports a broken file; it does not bind anyone
        if existing["record_sha256"] != digest:
            continue
        why = same_person(sig, existing)
        if why:
            raise RefusedError(f"refused: {first} must be a different person from {second}, but {other} is already "
                               f"signed by {existing['signer']} (key {existing['key_fingerprint']}) and this signature "
                               f"has the same {why}. Ask someone else to sign {role} with their own key.")




# ------------------------------------------------------------------ rehearsal

def sign_with_throwaway_keys(reports_dir: Path, deployment_id: str) -> list[Path]:
    """Sign all three roles of a rehearsal's record with throwaway keys of three identities, then verify.

    CI proves the whole chain this way. The allowed signers are kept as signatures/rehearsal_allowed_signers.
    Refuses a record that is not a rehearsal: throwaway signatures on a production record would mislead.
    """
    folder = rec.deployment_folder(Path(reports_dir), deployment_id)
    record = rec.load_record(folder)
    if not record.get("rehearsal"):
        raise RefusedError(f"{deployment_id} has runs against a live target: throwaway keys sign only rehearsals")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    paths, lines = [], []
    with tempfile.TemporaryDirectory(prefix="deploycheck-rehearsal-keys-") as tmp:
        for n, role in enumerate(record["signoff"]):
            identity = f"rehearsal-{role['slug']}@deploycheck"
            key = Path(tmp) / role["slug"]
            if n == 0 and shutil.which("ssh-keygen"):
                out = run([ssh_keygen(), "-q", "-t", "ed25519", "-N", "", "-C", identity, "-f", str(key)], "keygen")
                if out.returncode != 0:
                    raise SigningError(f"ssh-keygen -t ed25519 failed: {out.stderr.decode(errors='replace').strip()}")
                public = key.with_suffix(".pub").read_text().split()
                lines.append(f'{identity} namespaces="{NAMESPACE}" {public[0]} {public[1]}')
            else:
                private = Ed25519PrivateKey.generate()
                key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
                lines.append(f'{identity} namespaces="{NAMESPACE}" {openssh_public(private.public_key())}')
            paths.append(sign(reports_dir, deployment_id, role["slug"], key, identity, force=True))
    allowed_file = folder / rec.SIGNATURES / "rehearsal_allowed_signers"
    allowed_file.write_text("\n".join(lines) + "\n")
    check = verify(reports_dir, deployment_id, allowed_file)
    if not check.ok or check.unsigned:
        problems = [f"{name}: {message}" for name, message in check.problems]
        problems += [f"unsigned: {', '.join(check.unsigned)}"] if check.unsigned else []
        raise SigningError(f"rehearsal signatures do not verify: {'; '.join(problems)}")
    return paths

