"""The import contracts of `pyproject.toml` (`[tool.importlinter]`, run by `make lint`) hold
on the real tree, each one catches the violation it is there for, and docs/architecture.md
names exactly the contracts the configuration has (so the two cannot drift apart).

Each violation is planted in a small stand-in `dockyard` package made from the contracts'
own module names, checked by the real `lint-imports` in a subprocess (the real `dockyard` is
already imported here, and import-linter finds packages through `sys.modules` first).
"""

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomlkit

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
SHIM = ROOT / "dockyard" / "shim"


def importlinter_config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(config["tool"]["importlinter"])


def contracts() -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in importlinter_config()["contracts"]}


def lint_imports(cwd: Path) -> tuple[int, str]:
    """`lint-imports` with `cwd`'s pyproject.toml and `cwd` first on the path; (exit
    code, output with its lines joined, as long contract names wrap)."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "COLUMNS": "200"}
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(cwd / "pyproject.toml")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def broken(output: str) -> set[str]:
    """The ids of the contracts `output` reports broken."""
    return {cid for cid, c in contracts().items() if f"{c['name']} BROKEN" in output}


# --- the real tree -----------------------------------------------------------------------


def test_the_real_tree_keeps_every_contract() -> None:
    code, output = lint_imports(ROOT)
    assert code == 0, output
    assert f"Contracts: {len(contracts())} kept, 0 broken." in output, output


def test_architecture_doc_names_every_contract() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^- `([a-z-]+)` contract", section, flags=re.MULTILINE))
    assert named == set(contracts()), (
        "docs/architecture.md (Layers) and pyproject.toml ([tool.importlinter]) must list the"
        f" same contracts: the doc has {sorted(named)}, the config {sorted(contracts())}"
    )


def imported_names(path: Path) -> set[str]:
    """Every absolute module name `path` imports, function-local imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def foreign_imports(path: Path, siblings: set[str]) -> set[str]:
    """What a shim file imports beyond the standard library, its `siblings` (imported as
    such when run as a script), its own package, and dlt for `dlt_shim.py`."""
    allowed = set(sys.stdlib_module_names) | siblings | {"dockyard"}
    if path.name == "dlt_shim.py":
        allowed.add("dlt")
    return {
        name
        for name in imported_names(path)
        if name.split(".")[0] not in allowed
        or (name.startswith("dockyard") and not name.startswith("dockyard.shim"))
    }


def test_the_shim_imports_only_the_standard_library() -> None:
    """The shim runs in jobs' interpreters, where dockyard and its dependencies are not
    installed (`dlt_shim.py` runs in the workspace's environment, which has dlt)."""
    siblings = {p.stem for p in SHIM.rglob("*.py")}
    assert {"dlt_shim", "supervisor", "loglines", "sitecustomize"} <= siblings
    for path in sorted(SHIM.rglob("*.py")):
        foreign = foreign_imports(path, siblings)
        assert not foreign, f"{path.relative_to(ROOT)} imports {sorted(foreign)}"


def test_the_shim_check_sees_a_foreign_import(tmp_path: Path) -> None:
    script = tmp_path / "supervisor.py"
    script.write_text(
        "import json\nimport loglines\nfrom dockyard.shim import loglines as l2\n"
        "def f() -> None:\n    import sqlalchemy\n    from dockyard.errors import NotFound\n"
        "    import dlt\n"
    )
    found = foreign_imports(script, {"supervisor", "loglines"})
    assert found == {"sqlalchemy", "dockyard.errors", "dlt"}


# --- each contract catches its violation -------------------------------------------------


def write_module(root: Path, dotted: str, body: str = "") -> None:
    """Module `dotted` under `root` (as a package's `__init__.py` if it is one already),
    with every parent package."""
    parts = dotted.split(".")
    for i in range(1, len(parts)):
        init = root.joinpath(*parts[:i], "__init__.py")
        module = init.parent.with_suffix(".py")
        init.parent.mkdir(parents=True, exist_ok=True)
        if module.exists():  # a module becomes a package: it keeps its body
            module.rename(init)
        init.touch()
    package = root.joinpath(*parts)
    path = package / "__init__.py" if package.is_dir() else package.with_suffix(".py")
    path.write_text(path.read_text() + body if path.exists() else body)


def stand_in(root: Path) -> Path:
    """A `dockyard` that keeps every contract: a package for each layer, the contracts'
    source modules, and the one import each `ignore_imports` entry excuses."""
    config = importlinter_config()
    for contract in config["contracts"]:
        for layer in contract.get("layers", []):
            for tail in re.split(r"[|:]", layer):
                write_module(root, f"dockyard.{tail.strip().strip('()')}.__init__")
        for module in contract.get("source_modules", []) + contract.get("forbidden_modules", []):
            if module.startswith("dockyard."):
                write_module(root, module)
        for excused in contract.get("ignore_imports", []):
            importer, imported = (m.strip() for m in excused.split("->"))
            write_module(root, imported)
            write_module(root, importer, f"import {imported}\n")
    (root / "pyproject.toml").write_text(tomlkit.dumps({"tool": {"importlinter": config}}))
    return root


def test_the_stand_in_keeps_every_contract(tmp_path: Path) -> None:
    code, output = lint_imports(stand_in(tmp_path))
    assert code == 0, output


VIOLATIONS = [
    # (module, what it imports, the contracts it breaks)
    ("dockyard.controller.runner", "dockyard.web", {"layers"}),
    ("dockyard.cli.deploy", "dockyard.web.api", {"layers"}),
    # web → cli closes a loop with the one excused cli → web import (`dockyard server`)
    ("dockyard.web.pages", "dockyard.cli", {"layers", "acyclic"}),
    ("dockyard.errors", "dockyard.controller", {"layers"}),
    ("dockyard.shim.supervisor", "dockyard.errors", {"layers"}),
    ("dockyard.controller.executors.local", "sqlalchemy", {"executors-without-store"}),
    (
        "dockyard.controller.executors.base",
        "dockyard.controller.store",
        {"executors-without-store"},
    ),
    ("dockyard.worker.agent", "dockyard.controller.store", {"worker-without-store"}),
    ("dockyard.worker.client", "sqlalchemy", {"worker-without-store"}),
    ("dockyard.worker.agent", "dockyard.cli", {"layers"}),
    ("dockyard.controller.planning", "pygit2", {"pure-decisions"}),
    ("dockyard.controller.scheduling.ticks", "sqlalchemy.orm", {"pure-decisions"}),
    ("dockyard.controller.lifecycle.rules", "dockyard.controller.store", {"pure-decisions"}),
    ("dockyard.controller.lifecycle.decisions", "sqlalchemy", {"pure-decisions"}),
    ("dockyard.controller.lifecycle.status", "dockyard.controller.store", {"pure-decisions"}),
]


@pytest.mark.parametrize(("importer", "imported", "contracts_broken"), VIOLATIONS)
def test_a_contract_catches_its_violation(
    tmp_path: Path, importer: str, imported: str, contracts_broken: set[str]
) -> None:
    root = stand_in(tmp_path)
    if imported.startswith("dockyard."):
        write_module(root, imported)
    write_module(root, importer, f"import {imported}\n")
    code, output = lint_imports(root)
    assert code == 1, output
    assert broken(output) == contracts_broken, output


def test_an_indirect_import_is_a_violation_too(tmp_path: Path) -> None:
    """planning → gitstore → pygit2: the pure module reaches pygit2 through another."""
    root = stand_in(tmp_path)
    write_module(root, "dockyard.controller.gitstore", "import pygit2\n")
    write_module(root, "dockyard.controller.planning", "import dockyard.controller.gitstore\n")
    code, output = lint_imports(root)
    assert code == 1, output
    assert broken(output) == {"pure-decisions"}, output


def test_a_cycle_is_a_violation(tmp_path: Path) -> None:
    """The shape web/ had: app → proxy → answers → app (a function-local import counts)."""
    root = stand_in(tmp_path)
    write_module(root, "dockyard.web.asgi", "import dockyard.web.proxy\n")
    write_module(root, "dockyard.web.proxy", "import dockyard.web.answers\n")
    write_module(root, "dockyard.web.answers", "def f() -> None:\n    import dockyard.web.asgi\n")
    code, output = lint_imports(root)
    assert code == 1, output
    assert broken(output) == {"acyclic"}, output
    assert "No cycles are allowed in dockyard.web." in output, output


def test_a_new_top_level_module_needs_a_layer(tmp_path: Path) -> None:
    root = stand_in(tmp_path)
    write_module(root, "dockyard.newthing")
    code, output = lint_imports(root)
    assert code == 1, output
    assert broken(output) == {"layers"}, output
    assert "dockyard.newthing" in output, output


def test_every_contract_has_a_violation_here() -> None:
    """A contract added to the configuration gets a planted violation in this file too."""
    shown = {c for *_, breaks in VIOLATIONS for c in breaks} | {"acyclic"}
    assert shown == set(contracts()), f"no violation shown for {set(contracts()) - shown}"
