"""The signature file: signatures/<role>.json, one per sign-off role, and the statement it signs.

What a signature covers: the canonical JSON (sorted keys, compact) of a small sign-off statement that
holds the SHA-256 of the canonical record.json together with the role, the signer and the time. So the
record cannot change unnoticed, and neither can who signed it, for which role, or when. The exact
signed bytes are kept in the file (`payload`), so anyone can check it by hand:

    jq -j .payload signatures/approved-by.json > payload
    jq -r .signature signatures/approved-by.json > payload.sig
    ssh-keygen -Y verify -f allowed_signers -I "$(jq -r .signer signatures/approved-by.json)" \\
        -n deploycheck -s payload.sig < payload
"""
from __future__ import annotations

import json
from pathlib import Path

from deploycheck.record.ledger import canonical

NAMESPACE = "deploycheck"
SIGNATURE_TYPE = "deploycheck-signature/1"
STATEMENT_TYPE = "deploycheck-signoff/1"
FIELDS = ("type", "deployment_id", "role", "role_title", "signer", "identity_source", "signed_at", "algorithm",
          "key_type", "key_fingerprint", "public_key", "record", "record_sha256", "payload", "signature")
# Roles that must be different people (four-eyes): the approver is not the deployer.
DISTINCT = (("approved-by", "deployed-by"),)
# Signatures of raw Ed25519 PEM keys made before every signature was SSHSIG: the bare Ed25519 signature of
# the payload, base64. Only verified (records signed then must keep verifying); never made any more.
LEGACY_ED25519 = "ed25519"


class SigningError(Exception):
    """Bad input: a missing key, an unreadable file, a tool that is not installed."""


class RefusedError(SigningError):
    """A rule forbids this signature (same person as deployer and approver, role already signed)."""


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
