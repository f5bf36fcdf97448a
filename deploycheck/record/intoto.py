"""The record as an in-toto Statement v1 with the test-result predicate: record.intoto.json.

Its subjects are record.json and every file the record names, by SHA-256, so in-toto and SLSA tooling can
check the same files verify does.
"""
from __future__ import annotations

import json

from deploycheck.record.folder import CHECKLIST_COPY, RECORD_JSON, sha256_bytes
from deploycheck.record.summary import NOT_RUN

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
TEST_RESULT = "https://in-toto.io/attestation/test-result/v0.1"


def test_results(record: dict) -> tuple[str, list[str], list[str], list[str]]:
    """in-toto test-result lists: failed/error and held back ("not run" in a run) → failed, skipped → warned;
    items no run reached are not listed. A NO-GO record (e.g. an incomplete run) is never PASSED."""
    passed, warned, failed = [], [], []
    for item in record["items"]:
        name = f"{item['id']} {item['title']}"
        outcome = "failed" if item["outcome"] == NOT_RUN and item["run_id"] else item["outcome"]
        {"passed": passed, "skipped": warned, "failed": failed, "error": failed}.get(outcome, []).append(name)
    no_go = record["verdict"]["verdict"] != "GO"
    result = "FAILED" if failed or no_go else "WARNED" if warned else "PASSED"
    return result, passed, warned, failed


def render_statement(record: dict, record_bytes: bytes) -> bytes:
    """The record as an in-toto Statement v1 with the test-result predicate."""
    subject = [{"name": RECORD_JSON, "digest": {"sha256": sha256_bytes(record_bytes)}}]
    subject += [{"name": f["path"], "digest": {"sha256": f["sha256"]}} for f in record["files"] if f.get("sha256")]
    if record.get("bot_commit"):
        subject.append({"name": "bot-auto-order", "digest": {"gitCommit": record["bot_commit"]}})
    result, passed, warned, failed = test_results(record)
    configuration = [{"name": f["path"], "digest": {"sha256": f["sha256"]}}
                     for f in record["files"] if f["path"] == CHECKLIST_COPY and f.get("sha256")]
    if not configuration:
        configuration = [{"name": record["checklist"]["title"], "content": ""}]
    statement = {"_type": STATEMENT_TYPE, "subject": subject, "predicateType": TEST_RESULT,
                 "predicate": {"result": result, "configuration": configuration, "passedTests": passed,
                               "warnedTests": warned, "failedTests": failed}}
    return (json.dumps(statement, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()

