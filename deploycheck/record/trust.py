"""One trust path for signatures: the `sshsig` library checks every signature and reads allowed_signers.

Every signature deploycheck makes is SSHSIG (OpenSSH's PROTOCOL.sshsig, namespace "deploycheck"), whether
ssh-keygen made it from an OpenSSH key or sign.py from a raw Ed25519 PEM key, so one check covers both and
`ssh-keygen -Y verify` agrees with it. sshsig (maintained, used by git tooling) replaces the hand-written
SSHSIG and allowed_signers parsers this module had. Written here, and why:

- principal matching (`alice@ops,!mallory@*`): sshsig parses the principals but only matches a lone `*`;
  OpenSSH's rule (comma list, `*`/`?` wildcards, `!` excludes) is a few lines of fnmatch.
- signatures of raw Ed25519 PEM keys made before every signature was SSHSIG: the bare Ed25519 signature of
  the payload. Checked with sshsig's own key class, so they too go through the library.

sshsig supports Ed25519 and RSA keys; an ECDSA or security-key signature is reported with the manual
`ssh-keygen -Y verify` command (sigfile.py's docstring) rather than checked by a second path.
"""
from __future__ import annotations

import base64
import io
from fnmatch import fnmatchcase
from pathlib import Path

import sshsig
from sshsig.allowed_signers import AllowedSigner, load_allowed_signers_file
from sshsig.binary_io import SshReader, SshWriter
from sshsig.sshsig import SshsigSignature

from deploycheck.record.sigfile import LEGACY_ED25519, NAMESPACE, SigningError, statement_bytes

HASHES = ("sha256", "sha512")  # what ssh-keygen makes and accepts; sshsig alone would take any hashlib name
# sshsig raises these for a malformed or wrong signature (AssertionError: its Ed25519 key class asserts the
# signature's type).
BAD = (sshsig.InvalidSignature, ValueError, NotImplementedError, AssertionError, IndexError)


def sshsig_info(armored: str) -> dict:
    """Public key, namespace, hash and algorithm named inside an armored SSHSIG signature (not checked)."""
    try:
        outer = SshsigSignature.from_armored(armored)
        key = sshsig.PublicKey.from_ssh_encoding(outer.public_key)
        sig_type = SshReader.from_bytes(outer.signature).read_string().decode()
    except BAD as exc:
        raise SigningError(f"the SSH signature is malformed or of an unsupported key type ({exc}); sign with an "
                           "Ed25519 or RSA key, or check it by hand with ssh-keygen -Y verify") from None
    hash_alg = outer.hash_algo.decode(errors="replace")
    return {"key": key, "public_key": key.openssh_str(), "fingerprint": key.sha256_str(), "hash": hash_alg,
            "namespace": outer.namespace.decode(errors="replace"),
            "algorithm": f"{sig_type} (SSHSIG, {hash_alg})"}


def signing_key(sig: dict) -> sshsig.PublicKey:
    """The key whose signature over the statement this is; SigningError if it is not one, or does not match
    the file's public_key, fingerprint and algorithm."""
    payload = statement_bytes(sig)
    if payload.decode() != sig["payload"]:
        raise SigningError("its fields (role, signer, time, record hash or key) differ from the signed statement")
    if sig["algorithm"] == LEGACY_ED25519:
        return legacy_key(sig, payload)
    info = sshsig_info(sig["signature"])
    if info["namespace"] != NAMESPACE or info["hash"] not in HASHES:
        raise SigningError(f"the SSH signature is for namespace {info['namespace']!r} with {info['hash']}; "
                           f"expected {NAMESPACE!r} with sha512 or sha256")
    try:
        key = sshsig.check_signature(payload, sig["signature"], NAMESPACE)
    except BAD:
        raise SigningError("the SSH signature does not match the signed statement") from None
    if (key.openssh_str() != " ".join(sig["public_key"].split()[:2]) or key.sha256_str() != sig["key_fingerprint"]
            or info["algorithm"] != sig["algorithm"]):
        raise SigningError("the SSH signature's key or algorithm does not match the file's fields")
    return key


def legacy_key(sig: dict, payload: bytes) -> sshsig.PublicKey:
    if sig["key_type"] != "ed25519-pem":
        raise SigningError(f"algorithm {LEGACY_ED25519!r} is only for ed25519-pem keys, found {sig['key_type']!r}")
    try:
        key = sshsig.PublicKey.from_openssh_str(sig["public_key"])
        blob = io.BytesIO()
        writer = SshWriter(blob)  # the SSH wire form of an Ed25519 signature, which sshsig's key checks
        writer.write_string(b"ssh-ed25519")
        writer.write_string(base64.b64decode(sig["signature"], validate=True))
        key.verify(blob.getvalue(), payload)
    except BAD + (TypeError,):
        raise SigningError("the Ed25519 signature does not match the signed statement") from None
    if key.sha256_str() != sig["key_fingerprint"] or key.algo_name != "ssh-ed25519":
        raise SigningError("public_key does not match the signed key fingerprint")
    return key


# ------------------------------------------------------------------ allowed_signers

def allowed_signers(path: Path) -> list[AllowedSigner]:
    try:
        entries = list(load_allowed_signers_file(Path(path)))
    except FileNotFoundError:
        raise SigningError(f"--allowed-signers {path}: no such file") from None
    except (ValueError, NotImplementedError, UnicodeDecodeError) as exc:
        raise SigningError(f"{path} is not an allowed_signers file ({exc}); expected lines "
                           "'identity [namespaces=\"deploycheck\"] ssh-ed25519 AAAA...'") from None
    for entry in entries:
        dated = {"valid-after", "valid-before"} & set(entry.options or {})
        if dated:
            # ssh-keygen checks these against the time of verifying; refusing beats ignoring them silently
            raise SigningError(f"{path}: the line for {entry.principals} has {', '.join(sorted(dated))}, which "
                               "deploycheck does not check; remove it, or check by hand with ssh-keygen -Y verify")
    return entries


def matches(patterns: str, name: str) -> bool:
    """OpenSSH's match_pattern_list: any positive pattern matches and no `!pattern` does."""
    found = False
    for pattern in patterns.split(","):
        pattern = pattern.strip()
        if pattern.startswith("!"):
            if fnmatchcase(name, pattern[1:]):
                return False
        elif fnmatchcase(name, pattern):
            found = True
    return found


def trusted(entries: list[AllowedSigner], signer: str, key: sshsig.PublicKey) -> bool:
    """Whether allowed_signers lists this key for this identity in the deploycheck namespace."""
    for entry in entries:
        options = entry.options or {}
        if "cert-authority" in options:
            continue  # deploycheck signs with plain keys, never certificates
        if "namespaces" in options and not matches(options["namespaces"], NAMESPACE):
            continue
        if not matches(entry.principals, signer):
            continue
        try:
            listed = sshsig.PublicKey.from_openssh_str(f"{entry.key_type} {entry.base64_key}")
        except (ValueError, NotImplementedError):
            continue
        if listed == key:
            return True
    return False


def check_signature(sig: dict, allowed: Path | None) -> str:
    """Check the signature over its statement (and, given allowed_signers, who may sign with its key);
    returns how it was checked, raises SigningError if bad."""
    key = signing_key(sig)
    if allowed is None:
        return "valid (sshsig); key NOT checked against allowed signers"
    if not trusted(allowed_signers(allowed), sig["signer"], key):
        raise SigningError(f"{sig['signer']} with key {sig['key_fingerprint']} is not in {allowed} "
                           f"(for namespace {NAMESPACE}): add the line, or ask an allowed signer to sign")
    return f"trusted: key listed for {sig['signer']} in {allowed} (sshsig)"
