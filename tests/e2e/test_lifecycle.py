"""Versions, ad-hoc deploys, interactive jobs, tokens and controller restarts."""

import json
import os
import signal
import time
from pathlib import Path

import httpx

from tests import dbread
from tests.conftest import Cli, make_server, wait_run


def test_config_and_code_are_versioned_apart(cli: Cli, basic_ws: Path) -> None:
    first = cli.json("deploy", cwd=basic_ws)
    cli.run("launch", "hello", "-f")

    prod = basic_ws / ".dlt" / "prod.config.toml"
    prod.write_text(prod.read_text().replace("from prod.config.toml", "from prod v2"))
    config_only = cli.json("deploy", cwd=basic_ws)
    assert config_only["deployment_version"] == first["deployment_version"]
    assert config_only["configuration_version"] != first["configuration_version"]
    assert config_only["changed"] == ["configuration"]
    assert "hello from prod v2" in cli.run("launch", "hello", "-f").stdout

    (basic_ws / "helper.py").write_text("VALUE = 1\n")
    code_only = cli.json("deploy", cwd=basic_ws)
    assert code_only["deployment_version"] not in (None, first["deployment_version"])
    assert code_only["configuration_version"] == config_only["configuration_version"]
    assert set(code_only["unchanged"]) == set(first["added"])

    deployments = cli.json("deployment", "list")
    configurations = cli.json("configuration", "list")
    assert [d["version"] for d in deployments] == [
        code_only["deployment_version"],
        first["deployment_version"],
    ]
    assert [c["version"] for c in configurations] == [
        config_only["configuration_version"],
        first["configuration_version"],
    ]
    assert deployments[0]["message"].startswith("deploy: no job changes")

    runs = cli.json("job-run", "list", "hello")
    assert [(r["number"], r["configuration_version"]) for r in runs] == [
        (2, config_only["configuration_version"]),
        (1, first["configuration_version"]),
    ]
    info = cli.json("deployment", "info", first["deployment_version"])
    assert info["previous_version"] is None and "code/__deployment__.py" in info["changed_files"]
    latest = cli.json("deployment", "info")
    assert latest["changed_files"] == ["code/helper.py"]
    cfg = cli.json("configuration", "info")
    prod_file = next(f for f in cfg["files"] if f["name"] == "prod.config.toml")
    assert prod_file["keys"] == ["jobs.__deployment__.greeting"] and cfg["profiles"] == ["prod"]
    assert "prod v2" not in json.dumps(cfg)


def test_adhoc_launch_adds_one_job_and_archives_nothing(cli: Cli, basic_ws: Path) -> None:
    cli.run("deploy", cwd=basic_ws)
    before = {j["job_ref"] for j in cli.json("job", "list")}
    proc = cli.run("launch", "adhoc.py", "-f", cwd=basic_ws)
    assert "adhoc script ran" in proc.stdout
    jobs = {j["job_ref"]: j for j in cli.json("job", "list")}
    assert set(jobs) == before | {"jobs.adhoc"}
    assert all(j["status"] == "active" for j in jobs.values())
    assert cli.json("deployment", "list")[0]["message"].startswith("deploy adhoc.py (ad hoc)")

    # a full deploy archives the ad-hoc job but keeps its runs
    full = cli.json("deploy", cwd=basic_ws)
    assert full["archived"] == ["jobs.adhoc"]
    archived = next(j for j in cli.json("job", "list") if j["job_ref"] == "jobs.adhoc")
    assert archived["status"] == "archived" and archived["last_run"]["number"] == 1
    error = cli.fails("launch", "adhoc")
    assert "no active job matches" in error or "archived" in error

    # launching it again un-archives the same job with its history
    cli.run("launch", "adhoc.py", "-f", cwd=basic_ws)
    again = cli.json("job", "adhoc", "info")
    assert again["status"] == "active" and again["run_count"] == 2


def test_serve_starts_an_interactive_job_and_prints_its_url(cli: Cli, basic_ws: Path) -> None:
    cli.run("deploy", cwd=basic_ws)
    served = cli.json("serve", "tiny_api")
    assert served["status"] == "running" and served["profile"] == "prod"
    # through the server's proxy on the app's own origin, with a token; the app's own port
    # stays on loopback
    origin = f"http://tiny-api--{cli.workspace}.apps.localhost:{cli.server.port}"
    assert served["url"] == origin + "/"
    bearer = {"Authorization": f"Bearer {cli.server.token}"}
    assert httpx.get(served["url"], headers=bearer, timeout=5).text == "tiny api ok"
    assert httpx.get(served["url"], timeout=5).status_code == 401
    # serving it again finds the running instance
    assert cli.json("serve", "tiny_api")["run_id"] == served["run_id"]
    cli.run("job-run", "tiny_api", "cancel")
    assert wait_run(cli, "tiny_api", timeout=60)["status"] == "cancelled"


def test_secrets_are_committed_encrypted(cli: Cli, basic_ws: Path) -> None:
    (basic_ws / ".dlt" / "prod.secrets.toml").write_text('[x]\npassword = "s3cret-value"\n')
    cli.run("deploy", cwd=basic_ws)
    cfg = cli.json("configuration", "info")
    files = {f["name"]: f for f in cfg["files"]}
    assert files["prod.secrets.toml"]["keys"] == ["x.password"]
    assert files["prod.secrets.toml"]["secret"] is True
    assert "s3cret-value" not in json.dumps(cfg)


def test_deploy_warns_without_a_prod_profile(cli: Cli, basic_ws: Path) -> None:
    (basic_ws / ".dlt" / "prod.config.toml").unlink()
    proc = cli.run("deploy", cwd=basic_ws)
    assert "warning: no prod profile" in proc.stderr  # as the hosted runtime warns
    assert cli.json("info")["jobs"] > 0  # a warning, not a refusal


def test_tokens_scope_and_revocation(cli: Cli, basic_ws: Path) -> None:
    cli.run("deploy", cwd=basic_ws)
    created = cli.json("token", "create", "ci", "--role", "deploy", "-w", cli.workspace)
    token = created["token"]
    assert token.startswith("dy_") and created["role"] == "deploy"
    listed = cli.json("token", "list")
    entry = next(t for t in listed if t["id"] == created["id"])
    assert "token" not in entry and entry["prefix"] == token[:7]

    scoped = Cli(cli.server, cli.cache_home, cli.config_home, cli.workspace, token=token)
    assert scoped.json("trigger", "hello")["triggered"][0]["status"] == "triggered"
    cli.run("workspace", "create", "t-tokens-other")
    for name in ("t-tokens-other", "t-tokens-missing"):
        other = Cli(cli.server, cli.cache_home, cli.config_home, name, token=token)
        assert "another workspace" in other.fails("job", "list")
    assert "admin" in scoped.fails("token", "list")

    cli.run("token", "revoke", str(created["id"]))
    error = scoped.fails("job", "list")
    assert "invalid or revoked token" in error and token not in error
    response = cli.server.api("GET", f"/api/v1/workspaces/{cli.workspace}/jobs", token=token)
    assert response.status_code == 401 and token not in response.text


def test_runs_survive_a_controller_restart(
    cache_home: Path, tmp_path: Path, basic_ws: Path
) -> None:
    server = make_server(tmp_path).start()
    cli = Cli(server, cache_home, tmp_path / "config", "restart")
    try:
        cli.run("deploy", cwd=basic_ws)
        cli.run("launch", "napper")
        cli.run("launch", "hello")
        napper = wait_run(cli, "napper", statuses=("running",))
        wait_run(cli, "hello", statuses=("running", "completed"))
        server.stop(signal.SIGKILL)  # a crash, not a clean shutdown

        proc = json.loads((server.data_dir / "runs" / napper["run_id"] / "proc.json").read_text())
        os.kill(proc["pid"], 0)  # the job kept running without its controller
        time.sleep(3)
        server.start()

        hello = wait_run(cli, "hello")
        assert hello["status"] == "completed" and hello["number"] == 1
        assert "greeting: hello from prod.config.toml" in cli.run("logs", "hello").stdout
        running = cli.json("job-run", "napper", "info")
        assert running["status"] == "running" and running["number"] == 1
        cli.run("cancel", "napper")
        assert wait_run(cli, "napper", timeout=60)["status"] == "cancelled"
        log = cli.run("logs", "napper", "--all").stdout
        assert log.count("» starting") == 1  # adopted, never launched twice
        assert len(cli.json("job-run", "list", "napper")) == 1
    finally:
        server.stop()


def test_admin_token_is_generated_once_and_only_its_hash_kept(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.token = ""  # no DOCKYARD_ADMIN_TOKEN: the server makes one
    server.start()
    try:
        printed = [
            ln.split()[-1]
            for ln in server.log.read_text().splitlines()
            if ln.strip().startswith("dy_")
        ]
        assert len(printed) == 1
        token = printed[0]
        assert server.api("GET", "/api/v1/workspaces", token=token).status_code == 200
        shown = server.log.read_text().count(token)
        server.stop()
        server.start()
        assert server.log.read_text().count(token) == shown  # not printed again
        stored = [p.read_bytes() for p in server.data_dir.glob("dockyard.db*")]  # SQLite
        stored.append(dbread.dump(dbread.url_of(server)).encode())  # either engine, as rows
        assert all(token.encode() not in blob for blob in stored)
    finally:
        server.stop()


def test_sweep_reconciles_a_commit_that_bypassed_the_push_event(
    cache_home: Path, tmp_path: Path, basic_ws: Path
) -> None:
    import pygit2

    from dockyard.controller import gitstore, manifests

    server = make_server(tmp_path, DOCKYARD_SWEEP_INTERVAL="0.5").start()
    cli = Cli(server, cache_home, tmp_path / "config", "sweep")
    try:
        cli.run("deploy", cwd=basic_ws)
        repo = pygit2.Repository(str(server.data_dir / "repos" / "sweep.git"))
        head = gitstore.head_sha(repo)
        assert head is not None
        files = dict(gitstore.iter_files(repo, head, ""))
        manifest = manifests.load_yaml(files["manifest.yaml"].data)
        manifest["jobs"] = [j for j in manifest["jobs"] if not j["job_ref"].endswith(".napper")]
        files["manifest.yaml"] = gitstore.FileEntry(
            gitstore.MODE_FILE, manifests.dump_yaml(manifest).encode()
        )
        sig = pygit2.Signature("t", "t@t")
        tree = gitstore.write_tree(repo, files)
        repo.create_commit(gitstore.BRANCH, sig, sig, "edit on disk", tree, [pygit2.Oid(hex=head)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            napper = cli.json("job", "napper", "info")
            if napper["status"] == "archived":
                break
            time.sleep(0.3)
        assert napper["status"] == "archived"
    finally:
        server.stop()


def test_partial_syncs_move_one_version_each(cli: Cli, basic_ws: Path) -> None:
    first = cli.json("deploy", cwd=basic_ws)
    prod = basic_ws / ".dlt" / "prod.config.toml"
    prod.write_text(prod.read_text().replace("from prod.config.toml", "from prod synced"))
    (basic_ws / "helper.py").write_text("VALUE = 2\n")

    config = cli.json("configuration", "sync", cwd=basic_ws)
    assert config["changed"] == ["configuration"]
    assert config["deployment_version"] == first["deployment_version"]
    assert config["configuration_version"] != first["configuration_version"]
    assert "helper.py" not in json.dumps(cli.json("deployment", "info"))

    prod.write_text(prod.read_text().replace("from prod synced", "not deployed"))
    code = cli.json("deployment", "sync", cwd=basic_ws)
    assert code["changed"] == ["code"]
    assert code["configuration_version"] == config["configuration_version"]
    assert cli.json("deployment", "info")["changed_files"] == ["code/helper.py"]
    assert "hello from prod synced" in cli.run("launch", "hello", "-f").stdout


def test_show_manifest_and_an_explicit_python(cli: Cli, basic_ws: Path) -> None:
    shown = cli.run("deploy", "--dry-run", "--show-manifest", cwd=basic_ws).stdout
    assert "job_ref: jobs.__deployment__.hello" in shown and "created_at" not in shown
    error = cli.fails("deploy", "--python", "/no/such/python", cwd=basic_ws)
    assert "/no/such/python does not exist" in error


def test_health_and_openapi_are_served(cli: Cli) -> None:
    assert httpx.get(f"{cli.server.url}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{cli.server.url}/docs").status_code == 200
    paths = httpx.get(f"{cli.server.url}/openapi.json").json()["paths"]
    assert "/api/v1/workspaces/{ws}/trigger" in paths and "/api/v1/runs/{run_id}/logs" in paths
