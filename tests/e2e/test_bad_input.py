"""Every bad input gets a one-line error naming the problem, a non-zero exit, and leaves the
server exactly as it was: no commit, no changed job."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cli


def deployed(cli: Cli, ws: Path) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    return cli.json("deployment", "list"), cli.json("job", "list")


def write_deployment(ws: Path, body: str) -> None:
    (ws / "__deployment__.py").write_text("from dlt.hub import run\n\n" + body)


@pytest.fixture
def live(cli: Cli, basic_ws: Path) -> tuple[Cli, Path, tuple[object, object]]:
    """A deployed workspace and what the server holds for it."""
    cli.run("deploy", cwd=basic_ws)
    return cli, basic_ws, deployed(cli, basic_ws)


BROKEN_WORKSPACES = {
    "import error": (
        "import not_installed_pkg\n\n@run.job\ndef a():\n    pass\n",
        "ModuleNotFoundError: No module named 'not_installed_pkg'",
    ),
    "invalid every": (
        "@run.job(trigger='every:30s')\ndef a():\n    pass\n",
        "InvalidTrigger",
    ),
    "invalid cron": (
        "@run.job(trigger='schedule:61 * * * *')\ndef a():\n    pass\n",
        "61 * * * *",
    ),
    "unknown follow-up upstream": (
        "@run.job(trigger='job.success:jobs.nowhere.missing')\ndef a():\n    pass\n",
        "jobs.nowhere.missing",
    ),
    "unknown freshness upstream": (
        "@run.job(freshness=['job.is_fresh:jobs.nowhere.missing'])\ndef a():\n    pass\n",
        "jobs.nowhere.missing",
    ),
    "duplicate job refs": (
        "@run.job(name='same')\ndef a():\n    pass\n\n"
        "@run.job(name='same')\ndef b():\n    pass\n\n__all__ = ['a', 'b']\n",
        "duplicate job_ref",
    ),
    "timezone not IANA": (
        "@run.job(trigger='0 * * * *', require={'timezone': 'Mars/Olympus'})\ndef a():\n    pass\n",
        "timezone 'Mars/Olympus' is not an IANA name",
    ),
    "interval without a timed trigger": (
        "@run.job(interval={'start': '2026-01-01T00:00:00+00:00'})\ndef a():\n    pass\n",
        "interval",
    ),
    "job follows itself": (
        "@run.job(trigger='job.success:jobs.__deployment__.a')\ndef a():\n    pass\n",
        "jobs.__deployment__.a",
    ),
    "follow-up cycle": (
        "@run.job(trigger='job.success:jobs.__deployment__.b')\ndef a():\n    pass\n\n"
        "@run.job(trigger=a.success)\ndef b():\n    pass\n\n__all__ = ['a', 'b']\n",
        "follow-up triggers form a cycle: jobs.__deployment__.a -> jobs.__deployment__.b"
        " -> jobs.__deployment__.a",
    ),
    "fails the JSON schema": (
        "@run.job(execute={'concurrency': 0})\ndef a():\n    pass\n",
        "manifest.schema.json",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_WORKSPACES))
def test_broken_workspace_is_refused(live: tuple[Cli, Path, object], case: str) -> None:
    cli, ws, before = live
    body, expected = BROKEN_WORKSPACES[case]
    write_deployment(ws, body)
    for command in (["deploy"], ["deploy", "--dry-run"]):
        error = cli.fails(*command, cwd=ws)
        assert expected in error, error
        assert error.startswith("error: ") and "\n" not in error
    assert deployed(cli, ws) == before


def test_no_deployment_module(cli: Cli, tmp_path: Path) -> None:
    error = cli.fails("deploy", cwd=tmp_path)
    assert "no __deployment__.py" in error and "dockyard launch script.py" in error


def test_unknown_job_and_empty_selector(live: tuple[Cli, Path, object]) -> None:
    cli, _ws, _before = live
    assert "no job 'nosuchjob'" in cli.fails("launch", "nosuchjob")
    assert "no active job matches tag:nothing" in cli.fails("trigger", "tag:nothing")
    assert "no job 'nosuchjob'" in cli.fails("logs", "nosuchjob")
    assert "has not run yet" in cli.fails("logs", "hello")
    assert "has no run #7" in cli.fails("job-run", "hello", "7", "info")
    assert cli.json("job-run", "list") == []


def test_symlink_out_of_the_workspace(live: tuple[Cli, Path, object]) -> None:
    cli, ws, before = live
    os.symlink("/etc/hostname", ws / "escape.txt")
    error = cli.fails("deploy", cwd=ws)
    assert "escape.txt" in error and "outside the workspace" in error
    assert deployed(cli, ws) == before


def test_workspace_over_the_size_limit(live: tuple[Cli, Path, object]) -> None:
    cli, ws, before = live
    (ws / "big.bin").write_bytes(os.urandom(64 * 1024))
    error = cli.fails("deploy", cwd=ws, env={"DOCKYARD_MAX_WORKSPACE_BYTES": "32768"})
    assert "over the" in error and "limit" in error
    assert deployed(cli, ws) == before


def test_server_unreachable_names_the_url(cli: Cli, basic_ws: Path) -> None:
    error = cli.fails("job", "list", env={"DOCKYARD_SERVER": "http://127.0.0.1:9"})
    assert "http://127.0.0.1:9" in error and "cannot reach" in error
    error = cli.fails("deploy", cwd=basic_ws, env={"DOCKYARD_SERVER": "http://127.0.0.1:9"})
    assert "http://127.0.0.1:9" in error


def test_missing_and_wrong_tokens_are_refused(cli: Cli, basic_ws: Path) -> None:
    server = cli.server
    for headers in ({}, {"Authorization": "Bearer dy_wrong"}, {"Authorization": "Basic x"}):
        import httpx

        response = httpx.get(f"{server.url}/api/v1/workspaces", headers=headers)
        assert response.status_code == 401
        assert server.token not in response.text
    assert "invalid or revoked token" in cli.fails("job", "list", env={"DOCKYARD_TOKEN": "dy_x"})
    error = cli.fails("deploy", cwd=basic_ws, env={"DOCKYARD_TOKEN": "dy_wrong"})
    assert "token" in error


def test_pushed_commit_with_invalid_manifest_is_rejected(
    live: tuple[Cli, Path, object], tmp_path: Path
) -> None:
    cli, ws, before = live
    clone = tmp_path / "clone"
    auth = f"http.extraHeader=Authorization: Bearer {cli.server.token}"
    url = f"{cli.server.url}/git/{cli.workspace}.git"
    subprocess.run(["git", "-c", auth, "clone", "-q", url, str(clone)], check=True)
    manifest = clone / "manifest.yaml"
    manifest.write_text(
        manifest.read_text().replace(
            "launcher: dlt._workspace.deployment.launchers.job",
            "launcher: dlt._workspace.deployment.launchers.job\n    bogus_key: 1",
            1,
        )
    )
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "commit", "-qam", "break the manifest"], check=True)
    push = subprocess.run(
        [*git, "-c", auth, "push", "origin", "main"], capture_output=True, text=True
    )
    assert push.returncode != 0
    assert "dockyard: push rejected: invalid manifest" in push.stderr
    assert "bogus_key" in push.stderr
    assert deployed(cli, ws) == before


def test_push_with_a_wrong_token_is_refused(live: tuple[Cli, Path, object], tmp_path: Path) -> None:
    cli, ws, before = live
    url = f"{cli.server.url}/git/{cli.workspace}.git"
    clone = subprocess.run(
        [
            "git",
            "-c",
            "http.extraHeader=Authorization: Bearer dy_wrong",
            "-c",
            "credential.helper=",
            "clone",
            "-q",
            url,
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    assert clone.returncode != 0
    assert deployed(cli, ws) == before
