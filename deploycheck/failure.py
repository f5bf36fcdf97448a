"""One way to fail: a check's finding is a CheckFailed whose message says what was expected, what was
found and what to do next; the evidence it carries goes into the report anyway.

It stays an AssertionError so pytest (and the report) take it as the check's own failure, shown without a
traceback, like a failed assertion in a test. It is always raised explicitly, never by an `assert`
statement, so `python -O` (which strips asserts) cannot turn a failing check into a passing one.
"""
from __future__ import annotations


class CheckFailed(AssertionError):
    """A check's finding: the message is for the operator, the evidence goes in the report anyway."""

    def __init__(self, message: str, evidence: dict | None = None):
        super().__init__(message)
        self.evidence = evidence or {}
