"""Sign and verify the deployment record, one signature file per sign-off role.

What a signature covers: the canonical JSON (sorted keys, compact) of a small sign-off statement that
holds the SHA-256 of the canonical record.json together with the role, the signer and the time. So the
record cannot change unnoticed, and neither can who signed it, for which role, or when. The exact
signed bytes are kept in the signature file (`payload`), so anyone can check it by hand:

    jq -j .payload signatures/approved-by.json > payload
    jq -r .signature signatures/approved-by.json > payload.sig
    ssh-keygen -Y verify -f allowed_signers -I "$(jq -r .signer signatures/approved-by.json)" \
        -n deploycheck -s payload.sig < payload

Keys: an OpenSSH key (private, or a .pub whose private half is in ssh-agent) signs through
`ssh-keygen -Y sign -n deploycheck`, the way git signs commits; a raw Ed25519 PEM key (PKCS#8) signs
through `cryptography`. Both store the public key in OpenSSH form, so one allowed_signers file
(git's format: `identity [namespaces="deploycheck"] ssh-ed25519 AAAA...`) vouches for either.
"""
from __future__ import annotations

import base64
import fnmatch
import getpass
import hashlib
import json
import os
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from deploycheck import checklist as checklist_data
from deploycheck.record import compose as rec
from deploycheck.record.ledger import Ledger, LedgerError, canonical, sha256_file

NAMESPACE = "deploycheck"
SIGNATURE_TYPE = "deploycheck-signature/1"
STATEMENT_TYPE = "deploycheck-signoff/1"
PASSPHRASE_ENV = "DEPLOYCHECK_KEY_PASSPHRASE"
TIMEOUT = 120  # seconds; long enough to type a key passphrase
FIELDS = ("type", "deployment_id", "role", "role_title", "signer", "identity_source", "signed_at", "algorithm",
          "key_type", "key_fingerprint", "public_key", "record", "record_sha256", "payload", "signature")
# Roles that must be different people (four-eyes): the approver is not the deployer.
DISTINCT = (("approved-by", "deployed-by"),)


class SigningError(Exception):
    """Bad input: a missing key, an unreadable file, a tool that is not installed."""


class RefusedError(SigningError):
    """A rule forbids this signature (same person as deployer and approver, role already signed)."""


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


def fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of 'type base64' (the same string `ssh-keygen -l` prints)."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _ssh_string(data: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack(">I", data[offset:offset + 4])
    end = offset + 4 + length
    if end > len(data):
        raise ValueError("truncated")
    return data[offset + 4:end], end


def parse_sshsig(armored: str) -> dict:
    """The public key, namespace and algorithms inside an SSHSIG armored signature. Read by hand because
    ssh-keygen has no command that prints them; the format (OpenSSH's PROTOCOL.sshsig) is a magic, a version
    and five length-prefixed strings."""
    lines = [ln.strip() for ln in armored.strip().splitlines()]
    if not lines or lines[0] != "-----BEGIN SSH SIGNATURE-----" or lines[-1] != "-----END SSH SIGNATURE-----":
        raise ValueError("not an armored SSH signature")
    blob = base64.b64decode("".join(lines[1:-1]), validate=True)
    if blob[:6] != b"SSHSIG":
        raise ValueError("missing SSHSIG magic")
    offset = 10  # magic + uint32 version
    key, offset = _ssh_string(blob, offset)
    namespace, offset = _ssh_string(blob, offset)
    _, offset = _ssh_string(blob, offset)  # reserved
    hash_alg, offset = _ssh_string(blob, offset)
    signature, offset = _ssh_string(blob, offset)
    key_type, _ = _ssh_string(key, 0)
    sig_type, _ = _ssh_string(signature, 0)
    public_key = f"{key_type.decode()} {base64.b64encode(key).decode()}"
    return {"public_key": public_key, "namespace": namespace.decode(), "hash": hash_alg.decode(),
            "algorithm": f"{sig_type.decode()} (SSHSIG, {hash_alg.decode()})"}


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


# ------------------------------------------------------------------ signing

def statement_bytes(sig: dict) -> bytes:
    """The bytes a signature covers, rebuilt from the signature file's own fields."""
    # Every field of the file is either in here or derived from the signature (public_key, algorithm).
    return canonical({"type": STATEMENT_TYPE, "namespace": NAMESPACE, "deployment_id": sig["deployment_id"],
                      "record": sig["record"], "record_sha256": sig["record_sha256"], "role": sig["role"],
                      "role_title": sig["role_title"], "signer": sig["signer"], "identity_source": sig["identity_source"],
                      "signed_at": sig["signed_at"], "key_fingerprint": sig["key_fingerprint"],
                      "key_type": sig["key_type"]})


def render_signature(sig: dict) -> bytes:
    return (json.dumps(sig, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def sign_bytes(key_path: Path, data: bytes) -> dict:
    """Sign `data`; returns key_type, algorithm, public_key, key_fingerprint, signature."""
    kind = detect_key(key_path)
    if kind == "ed25519":
        key = load_ed25519(key_path)
        public = openssh_public(key.public_key())
        return {"key_type": "ed25519-pem", "algorithm": "ed25519", "public_key": public,
                "key_fingerprint": fingerprint(public), "signature": base64.b64encode(key.sign(data)).decode()}
    tool = ssh_keygen()
    with tempfile.TemporaryDirectory(prefix="deploycheck-sign-") as tmp:
        message = Path(tmp) / "record-signoff"
        message.write_bytes(data)
        # Data in a file, not on stdin, so ssh-keygen can still ask for a passphrase on the terminal.
        out = run([tool, "-Y", "sign", "-n", NAMESPACE, "-f", str(key_path), str(message)], "signing")
        if out.returncode != 0:
            raise SigningError(f"ssh-keygen -Y sign failed with {key_path}: "
                               f"{out.stderr.decode(errors='replace').strip() or 'no message'} "
                               "(an encrypted key needs a terminal to type its passphrase; or load it with ssh-add and pass its .pub)")
        armored = message.with_name(message.name + ".sig").read_text()
    info = parse_sshsig(armored)
    return {"key_type": "ssh", "algorithm": info["algorithm"], "public_key": info["public_key"],
            "key_fingerprint": fingerprint(info["public_key"]), "signature": armored}


def read_signature_file(path: Path) -> dict:
    """A signature file, checked for shape; SigningError says what is wrong."""
    try:
        sig = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SigningError(f"{path.name} is not valid JSON ({exc})") from None
    if not isinstance(sig, dict):
        raise SigningError(f"{path.name}: expected a JSON object, found {type(sig).__name__}")
    missing = [f for f in FIELDS if not isinstance(sig.get(f), str) or not sig.get(f)]
    if missing:
        raise SigningError(f"{path.name}: missing or empty fields {', '.join(missing)}; "
                           "it was not written by `python -m deploycheck sign`, or was edited")
    if sig["type"] != SIGNATURE_TYPE:
        raise SigningError(f"{path.name}: expected type {SIGNATURE_TYPE}, found {sig['type']!r}")
    if path.read_bytes() != render_signature(sig):
        raise SigningError(f"{path.name}: its bytes are not the form deploycheck writes (edited by hand?)")
    return sig


def same_person(a: dict, b: dict) -> str | None:
    if a["signer"].casefold() == b["signer"].casefold():
        return f"identity {a['signer']}"
    if a["key_fingerprint"] == b["key_fingerprint"]:
        return f"key {a['key_fingerprint']}"
    return None


def sign(reports_dir: Path, deployment_id: str, role: str, key: Path, identity: str | None = None, *,
         force: bool = False, now: str | None = None) -> Path:
    """Sign record.json for `role`; returns the signature file. Refuses a record that does not verify."""
    folder = rec.deployment_folder(Path(reports_dir), deployment_id)
    record = rec.load_record(folder)
    roles = {r["slug"]: r["role"] for r in record["signoff"]}
    if role not in roles:
        raise SigningError(f"--role {role}: expected one of {', '.join(roles)}")
    check = verify(reports_dir, deployment_id, check_signatures=False)
    if not check.ok:
        raise RefusedError(f"refusing to sign: the record does not verify ({check.problems[0][0]}: "
                           f"{check.problems[0][1]}); rebuild it with `python -m deploycheck record {deployment_id}`")
    digest = rec.record_digest(record)
    path = folder / rec.SIGNATURES / f"{role}.json"
    if path.exists() and not force:
        try:
            old = read_signature_file(path)
        except SigningError:
            old = None
        if old and old["record_sha256"] == digest:
            raise RefusedError(f"{role} already signed this record ({old['signer']}, {old['signed_at']}); "
                               "pass --force to replace that signature")

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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render_signature(sig))
    rec.write_html(folder, record)
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


# ------------------------------------------------------------------ verifying

def parse_allowed_signers(path: Path) -> list[tuple[list[str], dict, str]]:
    """git/OpenSSH allowed_signers lines: (principal patterns, options, 'type base64')."""
    entries = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SigningError(f"--allowed-signers {path}: no such file") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, posix=True)
        except ValueError as exc:
            raise SigningError(f"{path} line {number}: {exc}") from None
        principals, rest = words[0].split(","), words[1:]
        options: dict[str, str] = {}
        while rest and not (rest[0].startswith(("ssh-", "ecdsa-", "sk-"))):
            for option in rest.pop(0).split(","):
                name, _, value = option.partition("=")
                options[name.lower()] = value.strip('"')
        if len(rest) < 2:
            raise SigningError(f"{path} line {number}: expected 'identity [options] keytype base64'")
        entries.append((principals, options, f"{rest[0]} {rest[1]}"))
    return entries


def allowed(entries, signer: str, public_key: str) -> bool:
    key = " ".join(public_key.split()[:2])
    for principals, options, listed in entries:
        if listed != key or "cert-authority" in options:
            continue
        if "namespaces" in options and NAMESPACE not in options["namespaces"].split(","):
            continue
        if any(fnmatch.fnmatchcase(signer, p) for p in principals if not p.startswith("!")) and \
                not any(fnmatch.fnmatchcase(signer, p[1:]) for p in principals if p.startswith("!")):
            return True
    return False


def check_signature(sig: dict, allowed_signers: Path | None) -> str:
    """Check the signature over its statement; returns how it was checked, raises SigningError if bad."""
    payload = statement_bytes(sig)
    if payload.decode() != sig["payload"]:
        raise SigningError("its fields (role, signer, time, record hash or key) differ from the signed statement")
    if sig["key_type"] == "ed25519-pem":
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.serialization import load_ssh_public_key
        try:
            public = load_ssh_public_key(sig["public_key"].encode())
            public.verify(base64.b64decode(sig["signature"], validate=True), payload)
        except (InvalidSignature, ValueError, TypeError):
            raise SigningError("the Ed25519 signature does not match the signed statement") from None
        if fingerprint(sig["public_key"]) != sig["key_fingerprint"] or sig["algorithm"] != "ed25519":
            raise SigningError("public_key or algorithm does not match the signed key fingerprint")
        if allowed_signers:
            if not allowed(parse_allowed_signers(allowed_signers), sig["signer"], sig["public_key"]):
                raise SigningError(f"{sig['signer']} with key {sig['key_fingerprint']} is not in {allowed_signers}")
            return f"trusted: key listed for {sig['signer']} in {allowed_signers}"
        return "valid; key NOT checked against allowed signers"
    if sig["key_type"] != "ssh":
        raise SigningError(f"unknown key_type {sig['key_type']!r} (expected ssh or ed25519-pem)")
    try:
        info = parse_sshsig(sig["signature"])
    except (ValueError, struct.error) as exc:
        raise SigningError(f"the SSH signature is malformed ({exc})") from None
    if (info["namespace"] != NAMESPACE or fingerprint(info["public_key"]) != sig["key_fingerprint"]
            or info["public_key"] != sig["public_key"] or info["algorithm"] != sig["algorithm"]):
        raise SigningError("the SSH signature's namespace, key or algorithm does not match the file's fields")
    with tempfile.TemporaryDirectory(prefix="deploycheck-verify-") as tmp:
        sigfile = Path(tmp) / "signature.sig"
        sigfile.write_text(sig["signature"])
        if allowed_signers:
            args = ["-Y", "verify", "-f", str(allowed_signers), "-I", sig["signer"], "-n", NAMESPACE, "-s", str(sigfile)]
            how = f"trusted: ssh-keygen -Y verify against {allowed_signers}"
        else:
            args = ["-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(sigfile)]
            how = "valid (ssh-keygen -Y check-novalidate); key NOT checked against allowed signers"
        out = run([ssh_keygen(), *args], "verifying", data=payload)
    if out.returncode != 0:
        raise SigningError(f"ssh-keygen rejects it: {out.stderr.decode(errors='replace').strip() or out.stdout.decode().strip()}")
    return how


@dataclass
class Verification:
    folder: Path
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file relative to the folder, what is wrong)
    notes: list[str] = field(default_factory=list)
    signed: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # role title → (signer, signed_at, how)
    unsigned: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)  # role titles in the record's order
    missing: set[str] = field(default_factory=set)  # problem files that are absent rather than changed

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_file(self) -> str | None:
        return self.problems[0][0] if self.problems else None

    def fail(self, name: str, message: str, *, missing: bool = False) -> None:
        self.problems.append((name, message))
        if missing:
            self.missing.add(name)


def first_difference(a, b, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for n, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return first_difference(x, y, f"{path}[{n}]")
    return path or "(whole file)"


def check_files(folder: Path, record: dict, result: Verification) -> None:
    files = record.get("files")
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        result.fail(rec.RECORD_JSON, "its files list is not a list of {path, sha256} objects")
        return
    for entry in sorted(files, key=lambda f: str(f.get("path"))):
        if entry.get("made_by") and isinstance(entry.get("path"), str) and Path(entry["path"]).is_absolute():
            check_made_outside(entry, result)  # a dump under --backup-dir
            continue
        try:
            name = rec.safe_relpath(entry.get("path", ""), "record.json files")
        except rec.RecordError as exc:
            result.fail(rec.RECORD_JSON, str(exc))
            continue
        path = folder / name
        if entry.get("missing"):
            if path.exists():
                result.notes.append(f"{name} was missing when the record was built; it is not covered")
            continue
        if not path.is_file():
            if entry.get("made_by"):
                check_made_outside({**entry, "path": str(path)}, result, name)
            else:
                result.fail(name, "listed in record.json but not in the folder", missing=True)
            continue
        if name == rec.LEDGER and isinstance(entry.get("lines"), int):
            lines = path.read_bytes().splitlines(keepends=True)
            later = len(lines) - entry["lines"]
            digest = rec.sha256_bytes(b"".join(lines[:entry["lines"]]))
            if later > 0:
                result.notes.append(f"{name}: {later} run(s) appended after the record was built (not covered)")
        else:
            digest = sha256_file(path)  # in blocks: a dump can be larger than memory
        if digest != entry.get("sha256"):
            made = f" (made by {entry['made_by']}: changed since it was made)" if entry.get("made_by") else ""
            result.fail(name, f"SHA-256 {digest} does not match the record's {entry.get('sha256')}{made}")


def check_made_outside(entry: dict, result: Verification, name: str | None = None) -> None:
    """A file a run made, at its absolute path; if it is gone (a dump moved off-site), one of its 4.4 copies
    of the same hash stands in for it. Gone with no copy reachable: named as missing, with what to do."""
    name = name or entry["path"]
    path, expected = Path(entry["path"]), entry.get("sha256")
    if path.is_file():
        digest = sha256_file(path)
        if digest != expected:
            result.fail(name, f"SHA-256 {digest} does not match the {expected} recorded when {entry['made_by']} "
                              "made it: the file changed since")
        return
    copies = [Path(c) for c in entry.get("copies") or []]
    for copy in copies:
        if copy.is_file():
            digest = sha256_file(copy)
            if digest != expected:
                result.fail(name, f"not at {path}, and its copy {copy} has SHA-256 {digest}, not the {expected} "
                                  f"recorded when {entry['made_by']} made it: the copy is damaged")
            else:
                where = "there" if name == str(path) else f"at {path}"
                result.notes.append(f"{name} is not {where} (moved?); checked its copy {copy} instead: it matches")
            return
    where = (f"nor are its copies ({', '.join(map(str, copies))}) reachable from here" if copies
             else "and no copy of it is recorded")
    result.fail(name, f"not found at {path} ({entry['made_by']} made it), {where}. Bring the file or a copy "
                      f"back to that path and verify again, or check it by hand: `sha256sum FILE` must print {expected}",
                missing=True)


def verify(reports_dir: Path, deployment_id: str, allowed_signers: Path | None = None, *,
           check_signatures: bool = True) -> Verification:
    """Ledger chain, every listed file, record.json/intoto/html against a rebuild, every signature."""
    folder = rec.deployment_folder(Path(reports_dir), deployment_id)
    result = Verification(folder)
    if not (folder / rec.LEDGER).exists():
        result.fail(rec.LEDGER, "missing")
    try:
        Ledger(folder / rec.LEDGER).read()
    except LedgerError as exc:
        result.fail(rec.LEDGER, str(exc).replace(str(folder) + "/", ""))
    if not (folder / rec.RECORD_JSON).exists():
        raise rec.RecordError(f"no {rec.RECORD_JSON} in {folder}: nothing to verify; build it with "
                              f"`python -m deploycheck record {deployment_id}`")
    try:
        record = rec.load_record(folder)
    except rec.RecordError as exc:
        result.fail(rec.RECORD_JSON, str(exc))
        return result
    signed_digests = {sig.get("record_sha256") for sig in rec.read_signatures(folder, record).values()
                      if isinstance(sig, dict)}
    if signed_digests and rec.record_digest(record) not in signed_digests:
        # Signed, and no signature covers the record as it is now: record.json is what changed, not the files.
        result.fail(rec.RECORD_JSON, f"changed after it was signed: its SHA-256 is {rec.record_digest(record)}, the "
                                     f"signatures cover {', '.join(sorted(map(str, signed_digests)))}")
    check_files(folder, record, result)
    if result.ok:
        try:
            rebuilt = rec.rebuild(folder, record)
        except (rec.RecordError, checklist_data.ChecklistError, ValueError, KeyError, TypeError) as exc:
            rebuilt = None
            result.fail(rec.RECORD_JSON, f"cannot be rebuilt from the folder: {exc}")
        if rebuilt is None and result.ok:
            result.notes.append("record.json not compared with a rebuild (other record format, or no checklist.toml)")
        elif rebuilt is not None:
            data, statement = rebuilt
            if data != (folder / rec.RECORD_JSON).read_bytes():
                try:
                    where = first_difference(json.loads(data), json.loads((folder / rec.RECORD_JSON).read_bytes()))
                except ValueError:
                    where = "(whole file)"
                result.fail(rec.RECORD_JSON, f"differs from a rebuild from the ledger and checklist (first at {where})")
            elif not (folder / rec.RECORD_INTOTO).is_file() or (folder / rec.RECORD_INTOTO).read_bytes() != statement:
                result.fail(rec.RECORD_INTOTO, "differs from the in-toto statement of record.json (or is missing)")
    try:
        if check_signatures:
            verify_signatures(folder, record, allowed_signers, result)
        # Last: record.html shows the signatures, so a changed signature is named before the page.
        html = rec.render_html(record, rec.read_signatures(folder, record))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # An edited record.json that still parses; a rebuild mismatch usually names it first.
        result.fail(rec.RECORD_JSON, f"is not a well-formed record ({type(exc).__name__}: {exc}); rebuild it")
        return result
    if not (folder / rec.RECORD_HTML).is_file() or (folder / rec.RECORD_HTML).read_bytes() != html:
        result.fail(rec.RECORD_HTML, "differs from record.json and the signatures (or is missing): "
                                     f"re-render with `python -m deploycheck record {deployment_id}`")
    return result


def verify_signatures(folder: Path, record: dict, allowed_signers: Path | None, result: Verification) -> None:
    digest = rec.record_digest(record)
    good: dict[str, dict] = {}
    result.roles = [role["role"] for role in record["signoff"]]
    for role in record["signoff"]:
        name = role["signature"]
        path = folder / name
        if not path.exists():
            result.unsigned.append(role["role"])
            continue
        try:
            sig = read_signature_file(path)
            if (sig["role"], sig["role_title"], sig["deployment_id"], sig["record"]) != (
                    role["slug"], role["role"], record["deployment_id"], rec.RECORD_JSON):
                raise SigningError(f"it is for {sig['role']} ({sig['role_title']}) of {sig['deployment_id']}'s "
                                   f"{sig['record']}, expected {role['slug']} ({role['role']}) of "
                                   f"{record['deployment_id']}'s {rec.RECORD_JSON}")
            if sig["record_sha256"] != digest:
                raise SigningError(f"it signs record {sig['record_sha256'][:16]}…, but record.json is now "
                                   f"{digest[:16]}… (record changed after signing: sign again)")
            how = check_signature(sig, allowed_signers)
        except SigningError as exc:
            result.fail(name, str(exc))
            continue
        good[role["slug"]] = sig
        result.signed[role["role"]] = (sig["signer"], sig["signed_at"], how)
    for first, second in DISTINCT:
        if first in good and second in good and same_person(good[first], good[second]):
            result.fail(f"{rec.SIGNATURES}/{first}.json", f"{first} and {second} are the same person "
                                                           f"({same_person(good[first], good[second])})")
    known = {r["signature"] for r in record["signoff"]}
    for path in sorted((folder / rec.SIGNATURES).glob("*.json")):
        if f"{rec.SIGNATURES}/{path.name}" not in known:
            result.notes.append(f"{rec.SIGNATURES}/{path.name} is not a sign-off role of this record; ignored")


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
        raise SigningError("rehearsal signatures do not verify: " +
                           "; ".join(f"{f}: {m}" for f, m in check.problems) + (f" unsigned: {check.unsigned}" if check.unsigned else ""))
    return paths
