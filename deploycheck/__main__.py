"""python -m deploycheck record | render | sign | verify | rehearsal-sign | expected: the deployment record.

Exit codes (all subcommands):
  0  done; for verify: every listed file and every present signature checks out (a file a run made that
     was moved away counts when a copy of it recorded by 4.4 is reachable and matches)
  1  verify: something does not match or is missing (the first such file is named: the ledger, a run's
     report, the migration runner's output, the backup dump or backup.json, the record, a signature);
     --require-all: a role is unsigned
  2  usage error (bad arguments)
  3  input error: missing folder, ledger, record or key; unreadable file; ssh-keygen not installed
  4  refused by a rule: approver is the deployer, role already signed, signed record would change
"""
from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import tomli_w

from deploycheck import checklist as checklist_data
from deploycheck.record import compose as rec
from deploycheck.record import render, sign
from deploycheck.record import sigfile
from deploycheck.record.ledger import Ledger
from deploycheck.record.verify import verify

OK, MISMATCH, USAGE, INPUT, REFUSED = 0, 1, 2, 3, 4
DEFAULT_CHECKLIST = "checklists/v0.7.0.toml"


def find_checklist(args) -> Path:
    """--checklist, else the one pyproject.toml in the current directory names, else the folder's copy."""
    if args.checklist:
        return args.checklist
    pyproject = Path("pyproject.toml")
    if pyproject.is_file():
        ini = tomllib.loads(pyproject.read_text()).get("tool", {}).get("pytest", {}).get("ini_options", {})
        candidate = Path(ini.get("deploycheck_checklist", DEFAULT_CHECKLIST))
        if candidate.is_file():
            return candidate
    copy = args.reports_dir / args.deployment_id / rec.CHECKLIST_COPY
    if copy.is_file():
        return copy
    raise rec.RecordError(f"no checklist found (tried pyproject.toml's deploycheck_checklist, {DEFAULT_CHECKLIST} "
                          f"and {copy}); pass --checklist PATH")


def cmd_record(args) -> int:
    checklist = checklist_data.load(find_checklist(args))
    path = rec.build_record(args.reports_dir, args.deployment_id, checklist, force=args.force)
    record = rec.load_record(path.parent)
    print(f"wrote {path}, {path.with_name(rec.RECORD_HTML).name}, {rec.RECORD_INTOTO}")
    print(f"record SHA-256 (canonical): {rec.record_digest(record)}")
    summary = {f["field"]: f["value"] for f in record["report"]["summary"]}
    print(f"verdict: {record['verdict']['line']}")
    print(f"status: {summary.get('Status') or rec.NOT_FILLED}; final checklist: {record['final_status']}; "
          f"{len(record['files'])} files hashed")
    for warning in record["warnings"]:
        print(f"warning: {warning}")
    return OK


def cmd_render(args) -> int:
    folder = rec.deployment_folder(args.reports_dir, args.deployment_id)
    path = render.write_html(folder, rec.load_record(folder))
    print(f"wrote {path} ({render.template_version()}); record.json and the signatures are unchanged")
    return OK


def cmd_sign(args) -> int:
    path = sign.sign(args.reports_dir, args.deployment_id, args.role, args.key, args.identity, force=args.force)
    sig = sigfile.read_signature_file(path)
    print(f"{sig['role_title']} signed by {sig['signer']} (identity from {sig['identity_source']}) at {sig['signed_at']}")
    print(f"key {sig['key_fingerprint']} ({sig['algorithm']}); record SHA-256 {sig['record_sha256']}")
    print(f"wrote {path}")
    return OK


def cmd_verify(args) -> int:
    result = verify(args.reports_dir, args.deployment_id, args.allowed_signers)
    print(f"deployment {args.deployment_id} ({result.folder})")
    if args.allowed_signers:
        print(f"signers checked against {args.allowed_signers}")
    else:
        print("no --allowed-signers: signatures are checked against the keys they carry, NOT against who may "
              "sign; pass --allowed-signers FILE to check identities")
    for role in result.roles:
        if role in result.signed:
            signer, signed_at, how = result.signed[role]
            print(f"  {role:<12} {signer}  {signed_at}  {how}")
        elif role in result.unsigned:
            print(f"  {role:<12} unsigned")
        else:
            print(f"  {role:<12} INVALID signature (see below)")
    for note in result.notes:
        print(f"note: {note}")
    for name, message in result.problems:
        print(f"{'MISSING' if name in result.missing else 'MISMATCH'} {name}: {message}")
    if not result.ok:
        name = result.first_bad_file
        state = "is missing" if name in result.missing else "does not match"
        print(f"FAILED: {name} {state} (see above)", file=sys.stderr)
        return MISMATCH
    if args.require_all and result.unsigned:
        print(f"FAILED: unsigned roles: {', '.join(result.unsigned)}", file=sys.stderr)
        return MISMATCH
    print("OK: ledger chain, every listed file and every signature present check out"
          + (f"; unsigned: {', '.join(result.unsigned)}" if result.unsigned else ""))
    return OK


def cmd_expected(args) -> int:
    """The contract 5.3 measured on the copy, as an expected-schema file: what postdeploy holds production to
    when no rehearsal runs in that deployment (pytest -m postdeploy --expected FILE)."""
    folder = rec.deployment_folder(args.reports_dir, args.deployment_id)
    found = Ledger(folder / "ledger.jsonl").latest("5.3")
    contract = (found or {}).get("evidence", {}).get("Contract")
    if not contract:
        raise rec.RecordError(f"deployment {args.deployment_id} has no passed 5.3 with a contract in its ledger: run "
                              f"`pytest -m preflight --deployment-id {args.deployment_id}` with the release first")
    text = tomli_w.dumps(drop_nulls(contract))  # TOML has no null: an absent key says the same
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}: {contract['source']}")
    else:
        sys.stdout.write(text)
    return OK


def drop_nulls(value):
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value if v is not None]
    return value


def cmd_rehearsal_sign(args) -> int:
    for path in sign.sign_with_throwaway_keys(args.reports_dir, args.deployment_id):
        sig = sigfile.read_signature_file(path)
        print(f"{sig['role_title']:<12} {sig['signer']}  {sig['key_fingerprint']}  {sig['algorithm']}")
    print("all roles signed with throwaway keys and verified against signatures/rehearsal_allowed_signers")
    return OK


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m deploycheck", description=__doc__.splitlines()[0],
                                  epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("deployment_id", metavar="DEPLOYMENT_ID", help="the folder name under --reports-dir")
        p.add_argument("--reports-dir", type=Path, default=Path("reports"), help="where deployment folders are "
                       "(default: reports)")
        p.set_defaults(func=func)
        return p

    p = command("record", "build record.json, record.html and record.intoto.json from the ledger and run reports",
                cmd_record)
    p.add_argument("--checklist", type=Path, help="checklist TOML (default: pyproject's deploycheck_checklist)")
    p.add_argument("--force", action="store_true", help="rebuild even if that invalidates existing signatures "
                   "(they move to signatures/superseded/)")

    command("render", "re-render record.html from record.json and the signatures with this version's template "
            "(record.json is not touched; no signature changes)", cmd_render)

    p = command("sign", "sign record.json for one sign-off role", cmd_sign)
    p.add_argument("--role", required=True, choices=["deployed-by", "verified-by", "approved-by"],
                   help="the sign-off line; approved-by must be another person (identity and key) than deployed-by")
    p.add_argument("--key", required=True, type=Path, help="OpenSSH private key (or .pub in ssh-agent), "
                   f"or an Ed25519 PEM key; an encrypted PEM reads its passphrase from ${sign.PASSPHRASE_ENV}")
    p.add_argument("--identity", help="who signs (default: the SSH key's comment, else user@host)")
    p.add_argument("--force", action="store_true", help="replace this role's existing signature")

    p = command("verify", "check the ledger chain, every file the record lists and every signature", cmd_verify)
    p.add_argument("--allowed-signers", type=Path, metavar="FILE",
                   help="git/OpenSSH allowed_signers file: which identity may sign with which key")
    p.add_argument("--require-all", action="store_true", help="exit 1 if any role is unsigned")

    command("rehearsal-sign", "sign every role of a rehearsal record with throwaway keys, then verify",
            cmd_rehearsal_sign)

    p = command("expected", "write what the release's migration did on the rehearsal's copy (5.3) as an expected-"
                "schema file, for `pytest -m postdeploy --expected FILE`", cmd_expected)
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write it here (default: standard output)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (sigfile.RefusedError, rec.RecordRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return REFUSED
    except (rec.RecordError, sigfile.SigningError, checklist_data.ChecklistError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return INPUT


if __name__ == "__main__":
    sys.exit(main())
