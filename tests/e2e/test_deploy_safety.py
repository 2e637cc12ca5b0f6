"""A deploy can't silently wipe another workspace: the directory records where it deploys,
most-jobs archives ask first, and no deploy creates a workspace. Real server, real CLI."""

import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.conftest import WORKSPACES, Cli, Server, copy_workspace, make_server

ONLY_HELLO = '''"""Basic test workspace, cut down to one job."""

import dlt
from dlt.hub import run


@run.job
def hello(greeting: str = dlt.config.value):
    print(f"greeting: {greeting}")
'''


def _versions(cli: Cli, workspace: str) -> int:
    return len(cli.json("deployment", "list", "-w", workspace))


def test_a_directory_deploys_where_it_records_unless_w_says_otherwise(
    cli: Cli, basic_ws: Path
) -> None:
    config = basic_ws / ".dlt" / "config.toml"
    before = config.read_bytes()
    first = cli.json("deploy", cwd=basic_ws)
    assert first["recorded_workspace"] == cli.workspace
    assert config.read_bytes().endswith(before)  # the user's bytes kept, the record added

    other = f"{cli.workspace}-b"
    cli.make_workspace(other)
    # the environment (as the demo's shell exports it) does not move the directory
    error = cli.fails("deploy", cwd=basic_ws, env={"DOCKYARD_WORKSPACE": other})
    assert f"deploys to workspace '{cli.workspace}'" in error and f"not '{other}'" in error
    assert "DOCKYARD_WORKSPACE" in error and f"-w {other}" in error
    assert _versions(cli, other) == 0

    # named on the command line it goes there; the record stays
    moved = cli.json("deploy", "-w", other, cwd=basic_ws)
    assert moved["commit"] and moved["recorded_workspace"] is None
    assert any(f"stays recorded for workspace '{cli.workspace}'" in w for w in moved["warnings"])
    assert _versions(cli, other) == 1
    assert f'workspace = "{cli.workspace}"' in config.read_text()


def _deploy_answering(cli: Cli, ws: Path, answer: bytes) -> tuple[int, str]:
    """`dockyard deploy` with a terminal for stdin; `answer` typed once it asks."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "deploy"],
        cwd=ws,
        env=cli.env(),
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(terminal)
    assert proc.stderr is not None
    seen = b""
    while b"Deploy? [y/N]" not in seen:
        chunk = os.read(proc.stderr.fileno(), 4096)
        assert chunk, f"the deploy ended without asking:\n{seen.decode()}"
        seen += chunk
    os.write(controller, answer)
    _, rest = proc.communicate(timeout=300)
    os.close(controller)
    return proc.returncode, (seen + rest).decode()


def test_a_deploy_archiving_most_jobs_asks_first(cli: Cli, basic_ws: Path) -> None:
    cli.run("deploy", cwd=basic_ws)
    (basic_ws / "__deployment__.py").write_text(ONLY_HELLO)

    dry = cli.json("deploy", "--dry-run", cwd=basic_ws)
    assert len(dry["archived"]) == 6
    assert any("archives 6 of the 8 job(s)" in w and "--yes" in w for w in dry["warnings"])

    # no terminal and no --yes: refused in one line naming --yes, nothing pushed
    error = cli.fails("deploy", cwd=basic_ws)
    assert "archives 6 of the 8 job(s)" in error and "--yes" in error
    assert _versions(cli, cli.workspace) == 1

    # a terminal: the plan (the dry run's lines), then the question; "n" pushes nothing
    code, text = _deploy_answering(cli, basic_ws, b"n\n")
    assert code == 1, text
    assert "  archived  jobs.__deployment__.fails" in text
    assert "  updated   jobs.__deployment__.hello" in text
    assert "not confirmed, nothing pushed" in text
    assert _versions(cli, cli.workspace) == 1

    done = cli.json("deploy", "--yes", cwd=basic_ws)
    assert len(done["archived"]) == 6 and done["commit"]
    assert _versions(cli, cli.workspace) == 2


def test_an_unknown_workspace_is_refused_and_never_created(
    server: Server, cache_home: Path, tmp_path: Path
) -> None:
    cli = Cli(server, cache_home, tmp_path / "config", "t-typo-nowhere", creates_workspaces=False)
    ws = copy_workspace(WORKSPACES / "basic", tmp_path / "basic")
    config = (ws / ".dlt" / "config.toml").read_bytes()
    hint = "create it with `dockyard workspace create t-typo-nowhere`"
    for command in (["deploy"], ["deploy", "--dry-run"], ["launch", "adhoc.py"]):
        error = cli.fails(*command, cwd=ws)
        assert "workspace 't-typo-nowhere' does not exist" in error and hint in error, command
    # the server side: a git push to a new name creates nothing either
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "manifest.yaml").write_text("jobs: []\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    pushed = subprocess.run(
        [*git, "-c", f"http.extraHeader=Authorization: Bearer {server.token}", "push",
         f"{server.url}/git/t-typo-nowhere.git", "main"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert pushed.returncode != 0 and "not found" in pushed.stderr, pushed.stderr
    names = [w["name"] for w in server.api("GET", "/api/v1/workspaces").json()]
    assert "t-typo-nowhere" not in names
    assert (ws / ".dlt" / "config.toml").read_bytes() == config  # nothing recorded

    made = cli.json("workspace", "create", "t-typo-nowhere")
    assert made["name"] == "t-typo-nowhere" and made["deployment_version"] is None


def test_a_deploy_to_a_new_server_at_a_known_address_pushes_everything(
    cache_home: Path, basic_ws: Path, tmp_path: Path
) -> None:
    """The CLI keeps a mirror per server address. A new server at the same address (the demo
    run again after its state was removed) has an empty repository: the deploy must push,
    not find the old server's commit in its mirror and say "nothing changed"."""
    for name in ("first", "again"):
        (tmp_path / name).mkdir()
    first = make_server(tmp_path / "first").start()
    cli = Cli(first, cache_home, tmp_path / "config", "renewed")
    try:
        cli.run("deploy", cwd=basic_ws)
    finally:
        first.stop()
    again = make_server(tmp_path / "again")
    again.port, again.url = first.port, first.url  # the same address, nothing deployed
    cli.server = again.start()
    cli.made.clear()  # a new server: its workspace is made again
    try:
        deployed = cli.json("deploy", cwd=basic_ws)
        assert deployed["commit"], deployed
        assert "hello" in {job["name"] for job in cli.json("job", "list")}
    finally:
        again.stop()
