"""`make demo`'s admin token: the user's own is used or the demo stops; never replaced."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.cli import demotoken
from dockyard.cli.demotoken import Stop, decide

WHERE = ".dockyard-demo/admin-token"


def test_the_environments_token_is_used_and_kept() -> None:
    choice = decide("dy_mine", None, "dy_login", WHERE)
    assert (choice.token, choice.write) == ("dy_mine", True)
    assert "DOCKYARD_ADMIN_TOKEN" in choice.source
    assert decide("dy_mine", "dy_mine", None, WHERE).write is False


def test_the_environments_token_against_another_demo_state_stops() -> None:
    with pytest.raises(Stop) as stop:
        decide("dy_mine", "dy_demo", None, WHERE)
    assert "unset DOCKYARD_ADMIN_TOKEN" in str(stop.value) and WHERE in str(stop.value)


def test_without_one_the_demos_file_then_the_cli_login_then_a_new_token() -> None:
    assert decide(None, "dy_demo", "dy_login", WHERE).token == "dy_demo"
    login = decide(None, None, "dy_login", WHERE)
    assert (login.token, login.write) == ("dy_login", True)
    new = decide(None, None, None, WHERE)
    assert new.token.startswith("dy_") and len(new.token) > 40 and new.write


def _run(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    clean["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dockyard.cli.demotoken",
            str(tmp_path / "demo"),
            "http://127.0.0.1:8765",
        ],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_script_as_demo_sh_calls_it(tmp_path: Path) -> None:
    token_file = tmp_path / "demo" / demotoken.TOKEN_FILE
    # a saved login to the demo's server is used on a fresh demo
    (tmp_path / "config" / "dockyard").mkdir(parents=True)
    saved = {"server": "http://127.0.0.1:8765", "token": "dy_saved_login"}
    (tmp_path / "config" / "dockyard" / "config.json").write_text(json.dumps(saved))
    first = _run(tmp_path, {})
    assert first.returncode == 0 and first.stdout.strip() == "dy_saved_login"
    assert "your CLI login" in first.stderr
    assert token_file.read_text().strip() == "dy_saved_login"
    assert token_file.stat().st_mode & 0o777 == 0o600
    # another DOCKYARD_ADMIN_TOKEN: one line naming the choice, exit 1, nothing written
    other = _run(tmp_path, {"DOCKYARD_ADMIN_TOKEN": "dy_other"})
    assert other.returncode == 1 and other.stdout == ""
    assert other.stderr.count("\n") == 1 and "unset DOCKYARD_ADMIN_TOKEN" in other.stderr
    assert token_file.read_text().strip() == "dy_saved_login"
