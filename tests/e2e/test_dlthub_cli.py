"""The stock `dlthub` CLI against dockyard: the real client (dlt 1.31.0 + dlthub-client
0.28.7, Apache-2.0; never `dlt[hub]` nor the `dlthub` package, which is under an EULA) in its
own virtualenv, its real `dlthub` console script, against a real `dockyard server
--dlthub-compat` holding a workspace deployed with `dockyard deploy`.

What the user sees is asserted: the client's own tables, log lines, status lines, skip
messages and error texts (docs/dlthub-cli.md).
"""

import fcntl
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    WORKSPACES,
    Cli,
    Server,
    base_env,
    copy_workspace,
    make_server,
    wait_run,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CLIENT = ("dlt==1.31.0", "dlthub-client==0.28.7")
ENV_DIR = REPO / ".cache" / ("dlthub-client-" + "-".join(p.split("==")[1] for p in CLIENT))
WS = "dlthubcli"
REF = "jobs.__deployment__"


def uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def client_env() -> Path:
    """The client's virtualenv, built once into .cache (uv's own cache makes a rebuild
    quick). `.ready` is written last, so a build cut short is built again."""
    ENV_DIR.parent.mkdir(parents=True, exist_ok=True)
    with (ENV_DIR.parent / f"{ENV_DIR.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build, whoever asks first
        if not (ENV_DIR / ".ready").exists():
            shutil.rmtree(ENV_DIR, ignore_errors=True)
            subprocess.run([uv(), "venv", "-q", "-p", sys.executable, str(ENV_DIR)], check=True)
            python = str(ENV_DIR / "bin" / "python")
            subprocess.run([uv(), "pip", "install", "-q", "-p", python, *CLIENT], check=True)
            (ENV_DIR / ".ready").touch()
    return ENV_DIR


@dataclass
class Stand:
    server: Server
    admin: Cli
    ws_dir: Path
    ws_id: str
    key: str
    dlthub: Path

    def run(
        self, *args: str, key: str | None = None, timeout: float = 240, cwd: Path | None = None
    ) -> "Done":
        env = base_env()
        env.update(
            {
                "RUNTIME__API_BASE_URL": f"{self.server.url}/dlthub",
                "RUNTIME__API_KEY": key or self.key,
                "RUNTIME__WORKSPACE_ID": self.ws_id,
                "RUNTIME__DLTHUB_TELEMETRY": "false",
                "COLUMNS": "200",
            }
        )
        proc = subprocess.run(
            [str(self.dlthub), *args],
            cwd=cwd or self.ws_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Done(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.code == 0, (
            f"dlthub {' '.join(args)} failed ({done.code}):\n{done.out}\n{done.err}"
        )
        return done.out

    def fails(self, *args: str, key: str | None = None, cwd: Path | None = None) -> str:
        """The error line the user sees (red, on stderr; exit code 255)."""
        done = self.run(*args, key=key, cwd=cwd)
        assert done.code == 255, f"expected a failure:\n{done.out}\n{done.err}"
        return " ".join(done.err.split())


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory, cache_home: Path) -> Iterator[Stand]:
    dlthub = client_env() / "bin" / "dlthub"
    tmp = tmp_path_factory.mktemp("dlthub")
    server = make_server(tmp)
    server.args = ["--dlthub-compat"]
    server.start()
    try:
        admin = Cli(server, cache_home, tmp / "config", WS)
        ws_dir = copy_workspace(WORKSPACES / WS, tmp / WS)
        admin.run("deploy", cwd=ws_dir)
        made = admin.json("token", "create", "cli", "--dlthub", "-w", WS)
        ws_id = admin.json("workspace", "info")["dlthub_id"]
        yield Stand(server, admin, ws_dir, ws_id, made["token"], dlthub)
    finally:
        server.stop()


def test_the_key_is_a_dlt_sa_key_and_the_workspace_has_its_id(stand: Stand) -> None:
    assert stand.key.startswith("dlt_sa_")
    info = stand.admin.run("workspace", "info").stdout
    assert f"dlthub id              {stand.ws_id}" in info


def test_jobs_workspace_and_deployments_read(stand: Stand) -> None:
    listed = stand.ok("job", "list")
    for name in ("hello", "world", "never", "gated", "nightly", "napper"):
        assert f"__deployment__.{name}" in listed, listed
    assert "schedule:0 3 * * *" in listed  # the default trigger column

    info = stand.ok("job", "info", "hello")
    assert f"{REF}.hello" in info and "__deployment__::hello" in info

    ws = stand.ok("workspace", "info")
    assert f"Workspace: {WS} {stand.ws_id}" in ws
    assert "Organization: dockyard" in ws
    assert f"Workspace URL: {stand.server.url}/w/{stand.ws_id}" in ws
    assert "# registered jobs: 7" in ws
    assert "Current deployment version: 1" in ws
    assert "Unchanged jobs:" in ws  # the deploy plan: this directory is what runs

    configurations = stand.ok("workspace", "configuration", "list")
    assert "Profiles" in configurations

    versions = stand.ok("workspace", "deployment", "list")
    assert "Version #" in versions and "File count" in versions
    assert len([ln for ln in versions.splitlines() if ln.strip().startswith("1 ")]) == 1


def test_run_follow_prints_the_log_and_the_final_status(stand: Stand) -> None:
    out = stand.ok("run", "hello", "-f")
    assert "Starting hello  [remote]" in out
    assert f"workspace:  {WS}" in out
    assert "[user]   hello from dockyard" in out
    assert "[user]   second line" in out
    assert f"Run # 1 of job {REF}.hello finished with status: completed" in out

    logs = stand.ok("job", "logs", "hello")
    assert f"Run logs for Run # 1 of job {REF}.hello" in logs
    assert "hello from dockyard" in logs

    runs = stand.ok("job", "runs", "list", "hello")
    assert "completed" in runs and f"manual:{REF}.hello" in runs
    info = stand.ok("job", "runs", "info", "hello", "1")
    assert "completed" in info and f"{REF}.hello" in info
    result = stand.ok("job", "runs", "result", "hello", "1")
    assert "greeting" in result and '"greeting": "hello"' in result

    # the run link the client printed opens the dashboard's run page
    run_id = next(ln.split()[-1] for ln in out.splitlines() if "run_id:" in ln)
    link = httpx.get(f"{stand.server.url}/w/{stand.ws_id}/runs/{run_id}", timeout=30)
    assert link.status_code == 307
    assert link.headers["location"] == f"/ui/w/{WS}/runs/{run_id}"


def test_a_freshness_gated_follow_up_shows_why_it_was_skipped(stand: Stand) -> None:
    dry = stand.ok("job", "trigger", "tag:quick", "--dry-run")
    assert "[DRY RUN]" in dry and "2 job(s) triggered" in dry
    out = stand.ok("job", "trigger", "tag:quick")
    assert "Triggered (2):" in out
    assert f"{REF}.hello: tag:quick (run #" in out and f"{REF}.world: tag:quick" in out
    assert f"{stand.server.url}/w/{stand.ws_id}/runs/" in out
    assert "2 job(s) triggered, 0 skipped" in out

    # hello's success fires `gated`, whose upstream `never` never completed
    wait_run(stand.admin, "gated")
    runs = stand.ok("job", "runs", "list", "gated")
    assert "skipped" in runs
    logs = stand.ok("job", "logs", "gated")
    assert f"skipped: upstream {REF}.never: no completed run yet" in logs
    assert "declared no job result" in stand.fails("job", "runs", "result", "gated")


def test_trigger_a_busy_job_says_why_then_cancel_it(stand: Stand) -> None:
    first = stand.ok("job", "trigger", "napper")
    assert "1 job(s) triggered, 0 skipped" in first
    second = stand.ok("job", "trigger", "napper")
    assert "Skipped (1):" in second
    assert "Concurrency limit reached for this job — another run is already active." in second
    assert "concurrency limit 1 reached: run #1 still active" in second

    wait_run(stand.admin, "napper", 1, statuses=("running",))

    cancelled = stand.ok("job", "cancel", "napper")
    assert f"Cancelled run # 1 of {REF}.napper (was running)" in cancelled
    assert "1 run(s) cancelled" in cancelled
    assert wait_run(stand.admin, "napper", 1)["status"] == "cancelled"
    follow = stand.ok("job", "logs", "napper", "1", "-f")  # ended: the stored log
    assert "nap 0" in follow and "run cancelled" in follow


def test_pause_and_resume_a_schedule(stand: Stand) -> None:
    paused = stand.ok("job", "pause", "nightly")
    assert f"Scheduled runs for job `{REF}.nightly` are paused" in paused
    assert "__deployment__.nightly (paused)" in stand.ok("job", "list", "nightly")
    assert stand.admin.json("job", "nightly", "info")["paused_at"] is not None
    again = stand.ok("job", "pause", "nightly")
    assert "are already paused" in again

    resumed = stand.ok("job", "resume", "nightly")
    assert f"Scheduled runs for job `{REF}.nightly` are resumed" in resumed
    assert stand.admin.json("job", "nightly", "info")["paused_at"] is None


def test_refused_keys_show_the_clients_own_text(stand: Stand) -> None:
    wrong = stand.fails("job", "list", key="dy_not_a_dlthub_key")
    assert "Unrecognized API key format. Personal keys start with `dlt_u_`" in wrong

    made = stand.admin.json("token", "create", "gone", "--dlthub", "-w", WS)
    stand.admin.run("token", "revoke", str(made["id"]))
    revoked = stand.fails("job", "list", key=made["token"])
    assert revoked == (
        "Your API key is not valid. Generate a new one, or remove the configured API key to"
        " authenticate via login. (invalid or revoked token; ask an admin for a new one"
        " (HTTP 401))"
    )

    stand.admin.make_workspace("elsewhere")
    other = stand.admin.json("token", "create", "other", "--dlthub", "-w", "elsewhere")
    refused = stand.fails("job", "list", key=other["token"])
    assert "this API key is limited to workspace 'elsewhere'" in refused, refused
    assert f"not {stand.ws_id}" in refused and "(HTTP 403)" in refused

    reader = stand.admin.json("token", "create", "reader", "--dlthub", "--role", "read", "-w", WS)
    assert "__deployment__.hello" in stand.run("job", "list", key=reader["token"]).out
    denied = stand.fails("job", "trigger", "hello", key=reader["token"])
    assert "this token has role 'read'; the action needs 'deploy' (HTTP 403)" in denied


def test_the_api_is_off_unless_asked_for(server: Server) -> None:
    off = httpx.get(f"{server.url}/dlthub/api/v1/organizations", timeout=30)
    assert off.status_code == 404
    assert httpx.get(f"{server.url}/w/x", timeout=30).status_code == 404


def test_a_changed_file_deployed_through_the_client_is_a_new_version(
    stand: Stand, tmp_path: Path
) -> None:
    """Last in this module: it moves the deployed version (tests/e2e/test_dlthub_deploy.py
    has the rest of `dlthub deploy`)."""
    changed = copy_workspace(stand.ws_dir, tmp_path / "changed")
    with (changed / "__deployment__.py").open("a") as f:
        f.write("\n# changed here\n")
    done = stand.run("deploy", cwd=changed)
    assert done.code == 0, done.err
    assert "Synced changed workspace files" in done.out
    assert "0 added, 0 updated, 0 archived" in done.out
    versions = stand.ok("workspace", "deployment", "list")
    assert [ln.split()[0] for ln in versions.splitlines() if ln.strip()[:2] in ("1 ", "2 ")] == [
        "1",
        "2",
    ]
