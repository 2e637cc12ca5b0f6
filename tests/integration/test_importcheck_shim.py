"""The shim's `imports` and `distributions` commands in a real interpreter (dockyard's own
environment stands in for a job's): what each kind of import failure reports, that a module's
own prints do not spoil the answer, and the extras check against installed metadata."""

import json
import subprocess
import sys
from pathlib import Path

from dockyard.shim import SHIM


def shim(*args: str, cwd: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, str(SHIM), *args], capture_output=True, text=True, cwd=cwd, check=True
    )
    answer: dict[str, object] = json.loads(proc.stdout)
    return answer


def test_imports_reports_each_failure_with_its_workspace_line(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "deep.py").write_text("import os\nimport no_such_module_xyz\n")
    (tmp_path / "uses_deep.py").write_text("print('noise on stdout')\nfrom pkg import deep\n")
    (tmp_path / "raises.py").write_text("x = 1\nraise ValueError('bad config')\n")
    (tmp_path / "broken.py").write_text("def f(:\n")
    (tmp_path / "fine.py").write_text("import yaml\nprint('fine')\n")
    request = {
        "modules": ["uses_deep", "raises", "broken", "fine"],
        "requirements": ["dlt[workspace,duckdb]==1.31.0", "pyyaml", "no-such-dist[x]"],
    }
    answer = shim("imports", str(tmp_path), json.dumps(request), cwd=tmp_path)
    modules = answer["modules"]
    assert isinstance(modules, dict)
    assert modules["fine"] is None
    assert modules["uses_deep"] == {
        "kind": "missing",
        "missing": "no_such_module_xyz",
        "type": "ModuleNotFoundError",
        "error": "No module named 'no_such_module_xyz'",
        "where": "pkg/deep.py:2",
    }
    assert modules["raises"]["kind"] == "error"
    assert modules["raises"]["type"] == "ValueError" and modules["raises"]["where"] == "raises.py:2"
    assert modules["broken"]["type"] == "SyntaxError"
    assert modules["broken"]["where"] == "broken.py:1"
    # dlt has `duckdb` but no `workspace`; an absent distribution is not this check's business
    assert answer["extras"] == [
        {
            "requirement": "dlt[workspace,duckdb]==1.31.0",
            "package": "dlt",
            "version": "1.31.0",
            "missing": ["workspace"],
        }
    ]


def test_distributions_maps_import_names_to_distributions(tmp_path: Path) -> None:
    found = shim("distributions", "dotenv", "yaml", "no_such_module_xyz", cwd=tmp_path)
    assert found == {"dotenv": ["python-dotenv"], "yaml": ["PyYAML"], "no_such_module_xyz": []}
