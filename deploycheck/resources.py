"""Where the suite's files are: the checklist data, expected schema and profiles (checklists/), the thin tests
of every phase (tests/<phase>/), the fixtures (stand-in bot, reference bot, baseline generator, v0.6 schema,
rehearsal attestations) and the release's migration and its runner (scripts/).

ROOT is the one folder holding them all, in the checkout's layout:

- run from a checkout (or its editable install): the checkout's root, the folder beside `deploycheck/`;
- installed from the built wheel: `deploycheck/bundle/`, where setup.py's build step copies the same files
  with the same relative paths (setuptools cannot map files from outside the package into it, and moving
  them into the package would change every path that operators and the docs use).

Every module finds these files from ROOT, never from `Path(__file__).parents[...]`.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent
BUNDLE = PACKAGE / "bundle"

# The checkout wins when there is one: an editable install runs the files being edited, not a stale copy.
ROOT = CHECKOUT if (CHECKOUT / "checklists").is_dir() else BUNDLE
