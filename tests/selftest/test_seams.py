"""The run's state in two objects (issue 23): a Deployment built once and never changed, Results written by the
recorder alone; nothing in the plugin or the fleet rebinds process-wide settings (os.environ, config.option).
Each check reads the package's source, and is shown to catch a planted write."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from deploycheck.pytest_plugin.deployment import Deployment
from deploycheck.pytest_plugin.results import Results

PACKAGE = Path(__file__).resolve().parents[2] / "deploycheck"
PLUGIN_AND_FLEET = sorted([*(PACKAGE / "pytest_plugin").glob("*.py"), *(PACKAGE / "fleet").glob("*.py")])
RESULTS_WRITERS = {name for name, value in vars(Results).items() if name.startswith("_") and not name.startswith("__")
                   and callable(value)}


def dotted(node: ast.AST) -> str:
    """`os.environ`, `config.option`, `self.config.option` for a Name/Attribute chain; '' otherwise."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def process_wide_writes(source: str) -> list[str]:
    """Assignments into os.environ or an option namespace (config.option, option = config.option), setattr on
    one, and os.environ's mutating methods."""
    tree, found = ast.parse(source), []
    options = {"option"} | {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                            and dotted(node.value).endswith("config.option")
                            for target in node.targets if isinstance(target, ast.Name)}

    def wide(node) -> bool:
        name = dotted(node)
        return name == "os.environ" or name.endswith("config.option") or name in options

    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if isinstance(target, (ast.Subscript, ast.Attribute)) and wide(target.value):
                found.append(f"line {node.lineno}: writes {dotted(target.value) or 'os.environ'}")
        if isinstance(node, ast.Call):
            func = node.func
            if dotted(func) == "setattr" and node.args and wide(node.args[0]):
                found.append(f"line {node.lineno}: setattr on {dotted(node.args[0])}")
            if isinstance(func, ast.Attribute) and func.attr in ("update", "setdefault", "pop", "clear") \
                    and dotted(func.value) == "os.environ":
                found.append(f"line {node.lineno}: os.environ.{func.attr}")
    return found


def results_writes(source: str) -> list[str]:
    """Calls of Results' own writers (its underscore methods), which only the recorder may make."""
    return [f"line {node.lineno}: .{node.func.attr}()" for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in RESULTS_WRITERS and dotted(node.func.value) not in ("self", "super")]


def test_nothing_in_the_plugin_or_the_fleet_writes_the_environment_or_the_options():
    found = {path.name: problems for path in PLUGIN_AND_FLEET if (problems := process_wide_writes(path.read_text()))}
    assert not found, found


@pytest.mark.parametrize("planted", [
    'os.environ["DATABASE_URL"] = tenant.database_url',
    "config.option.service = tenant.service",
    'setattr(option, "bot_dir", tenant.bot_dir)',
    'os.environ.update({"X": "1"})',
])
def test_a_planted_process_wide_write_is_caught(planted):
    found = process_wide_writes(f"import os\ndef bind(config, tenant):\n    option = config.option\n    {planted}\n")
    assert len(found) == 1 and found[0].startswith("line 4: "), found


def test_reading_them_is_not_a_write():
    assert process_wide_writes("import os\nx = os.environ.get('A')\ny = config.option.service\n") == []


def test_the_deployment_cannot_be_changed_once_built(tmp_path):
    deployment = Deployment(id="d1", reports_dir=tmp_path, target="embedded", service="rehearsal", bot="standin")
    with pytest.raises(dataclasses.FrozenInstanceError):
        deployment.id = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        deployment.database = "postgresql://elsewhere/db"
    tenant = deployment.for_tenant("shop2", "run1", 2, host="ssh://ops@shop2")
    assert (tenant.id, tenant.reports_dir, tenant.host, deployment.host) == ("d1--shop2", tmp_path.parent / "d1--shop2",
                                                                             "ssh://ops@shop2", "local")
    assert tenant.fleet == {"id": "d1", "run": "run1", "wave": 2, "tenant": "shop2"} and deployment.fleet == {}


def test_only_the_recorder_writes_results():
    assert {"_result", "_hand", "_finish", "_opened"} <= RESULTS_WRITERS
    found = {str(path.relative_to(PACKAGE)): problems for path in sorted(PACKAGE.rglob("*.py"))
             if path.name not in ("recorder.py", "results.py") and (problems := results_writes(path.read_text()))}
    assert not found, found
    tests = Path(__file__).resolve().parents[1]
    thin = {str(path.relative_to(tests)): problems for path in sorted(tests.glob("*/test_*.py"))
            if "selftest" not in path.parts and (problems := results_writes(path.read_text()))}
    assert not thin, thin


def test_a_planted_results_write_is_caught():
    assert results_writes("def f(run, entry):\n    run.results._result(entry)['outcome'] = 'passed'\n") == \
        ["line 2: ._result()"]


def test_results_are_read_only_views(tmp_path):
    results = Results(Deployment(id="d1", reports_dir=tmp_path, target="embedded", service="rehearsal",
                                 bot="standin"))
    with pytest.raises(TypeError):
        results.items["8.2"] = {"outcome": "passed"}
    with pytest.raises(TypeError):
        results.verdict["verdict"] = "GO"


def translations(source: str) -> list[str]:
    """`except X as exc: pytest.fail(str(exc))` (or redactor.text(str(exc))): a thin test turning a library's
    exception into a failure, and redacting again what the recorder redacts. Library errors are CheckFailed:
    their message is the cause already."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ExceptHandler) or len(node.body) != 1:
            continue
        call = node.body[0].value if isinstance(node.body[0], ast.Expr) else None
        if isinstance(call, ast.Call) and dotted(call.func) == "pytest.fail" and call.args:
            text = ast.unparse(call.args[0])
            if text in (f"str({node.name})", f"run.redactor.text(str({node.name}))"):
                found.append(f"line {node.lineno}: except {ast.unparse(node.type)}")
    return found


def test_thin_tests_do_not_translate_library_exceptions():
    tests = Path(__file__).resolve().parents[1]
    found = {str(path.relative_to(tests)): problems for path in sorted(tests.glob("*/test_*.py"))
             if "selftest" not in path.parts and (problems := translations(path.read_text()))}
    assert not found, found
    planted = "def t(b):\n    try:\n        load(b)\n    except BackupError as exc:\n        pytest.fail(str(exc), pytrace=False)\n"
    assert translations(planted) == ["line 4: except BackupError"]
