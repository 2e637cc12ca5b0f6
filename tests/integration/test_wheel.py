"""The built wheel ships the JSON Schemas, the dashboard's templates and static files and
the apps' loopback hook, and works in a clean virtualenv."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def test_wheel_installs_and_loads_its_schemas(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [uv(), "build", "--wheel", "--out-dir", str(dist), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("dockyard-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([uv(), "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([uv(), "pip", "install", "-q", "-p", str(python), str(wheel)], check=True)
    probe = (
        "import json; from dockyard.controller import manifests;"
        "from dockyard.web.pages import render; from dockyard import shim;"
        "print(json.dumps({'dir': str(manifests.schema_dir()),"
        " 'id': manifests.load_schema()['$id'],"
        " 'web': [str(render.TEMPLATES / 'base.html'), str(render.STATIC / 'htmx.min.js'),"
        " str(shim.LOOPBACK / 'sitecustomize.py')],"
        " 'page': render.make_environment().get_template('login.html').name}))"
    )
    out = subprocess.run(
        [str(python), "-c", probe], cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    assert loaded["dir"].startswith(str(venv)), loaded  # from the wheel, not the checkout
    assert loaded["id"].endswith("manifest.schema.json")
    for shipped in loaded["web"]:  # the dashboard's templates, vendored htmx, the apps' hook
        assert shipped.startswith(str(venv)) and Path(shipped).is_file(), shipped
    assert loaded["page"] == "login.html"
    help_text = subprocess.run(
        [str(venv / "bin" / "dockyard"), "--help"], check=True, capture_output=True, text=True
    ).stdout
    assert "deploy" in help_text and "job-run" in help_text
