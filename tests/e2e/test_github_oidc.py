"""GitHub Actions OIDC end to end: a loopback issuer (locally generated RSA key, JWKS and
discovery served by a real HTTP server thread) trusted by a real server process; job tokens
exchanged at `POST /api/v1/auth/github-oidc`, refused with one line per failed check, and a
good one giving a short-lived token that deploys a workspace with the real `dockyard deploy`.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests import oidc_issuer
from tests.conftest import REPO as REPO_ROOT
from tests.conftest import Cli, Server, base_env, make_server
from tests.oidc_issuer import Issuer

REPO = "octo-org/octo-ws"


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with oidc_issuer.running() as running:
        yield running


@pytest.fixture(scope="module")
def oidc_server(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[Server]:
    srv = make_server(
        tmp_path_factory.mktemp("oidc-server"), DOCKYARD_GITHUB_OIDC_ISSUER=issuer.url
    ).start()
    yield srv
    srv.stop()


@pytest.fixture
def cli(oidc_server: Server, cache_home: Path, tmp_path: Path) -> Cli:
    return Cli(oidc_server, cache_home, tmp_path / "config", "octo")


def exchange(server: Server, token: str, workspace: str = "octo") -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/auth/github-oidc",
        json={"token": token, "workspace": workspace},
        timeout=30,
    )


def github_env(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def actions_env(issuer: Issuer, tmp_path: Path) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "true",
        "ACTIONS_ID_TOKEN_REQUEST_URL": issuer.request_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": oidc_issuer.REQUEST_TOKEN,
        "GITHUB_ENV": str(tmp_path / "github_env"),
    }


@pytest.fixture(scope="module")
def allowed(oidc_server: Server, cache_home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Workspace `octo`, whose rules allow octo-org/octo-ws on main (deploy) and on pull
    requests (read)."""
    admin = Cli(oidc_server, cache_home, tmp_path_factory.mktemp("cfg"), "octo")
    admin.run("workspace", "create", "octo")
    allow = ("workspace", "allow-github-oidc", "octo")
    admin.run(*allow, "--repo", "Octo-Org/octo-ws", "--ref", "refs/heads/main")
    admin.run(*allow, "--repo", REPO, "--ref", "refs/pull/*/merge", "--role", "read")
    return "octo"


def test_the_server_says_which_audience_to_request(oidc_server: Server, issuer: Issuer) -> None:
    answer = httpx.get(f"{oidc_server.url}/api/v1/auth/github-oidc", timeout=10).json()

    assert answer["audience"] == oidc_server.url
    assert answer["issuer"] == issuer.url
    assert answer["token_lifetime_s"] == 900


def test_workspace_info_lists_the_rules(cli: Cli, allowed: str) -> None:
    info = cli.json("workspace", "info", "-w", allowed)

    assert [(r["repository"], r["ref"], r["role"]) for r in info["github_oidc"]] == [
        (REPO, "refs/heads/main", "deploy"),
        (REPO, "refs/pull/*/merge", "read"),
    ]
    shown = cli.run("info", "-w", allowed).stdout
    assert "github oidc: octo-org/octo-ws refs/heads/main -> deploy" in shown


REFUSALS = [
    ("wrong audience", {"audience": "https://elsewhere.example.com"}, 401, "oidc_wrong_audience"),
    ("wrong repository", {"repository": "evil-org/octo-ws"}, 403, "oidc_repository_not_allowed"),
    ("wrong ref", {"ref": "refs/heads/feature"}, 403, "oidc_ref_not_allowed"),
    (
        "expired",
        {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000},
        401,
        "oidc_expired",
    ),
    ("bad signature", {"key": oidc_issuer.new_key()}, 401, "oidc_bad_signature"),
    ("unknown key id", {"kid": "not-published"}, 401, "oidc_unknown_key"),
    (
        "issuer mismatch",
        {"iss": "https://token.actions.githubusercontent.com"},
        401,
        "oidc_issuer_mismatch",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "status", "code"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_each_failed_check_is_refused_with_its_one_line_reason(
    oidc_server: Server,
    issuer: Issuer,
    allowed: str,
    overrides: dict[str, Any],
    status: int,
    code: str,
) -> None:
    overrides = dict(overrides)
    audience = overrides.pop("audience", oidc_server.url)
    answer = exchange(oidc_server, issuer.mint(audience, **overrides), allowed)

    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error", "code"}
    assert body["code"] == code
    assert body["error"].startswith("GitHub OIDC: ") and "\n" not in body["error"]


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_unsigned_and_hmac_tokens_are_refused(
    oidc_server: Server, issuer: Issuer, allowed: str, alg: str
) -> None:
    claims = oidc_issuer.job_claims(issuer.url, oidc_server.url)
    header = {"alg": alg, "typ": "JWT", "kid": oidc_issuer.KID}
    forged = oidc_issuer.unsigned(header, claims, None if alg == "none" else issuer.public_pem())

    answer = exchange(oidc_server, forged, allowed)

    assert answer.status_code == 401
    assert answer.json()["code"] == "oidc_bad_algorithm"


def test_an_unknown_workspace_is_refused_like_a_repository_not_allowed(
    oidc_server: Server, issuer: Issuer, allowed: str
) -> None:
    answer = exchange(oidc_server, issuer.mint(oidc_server.url), "no-such-ws")

    assert answer.status_code == 403
    assert answer.json()["code"] == "oidc_repository_not_allowed"


def test_rules_are_admin_only(oidc_server: Server, issuer: Issuer, allowed: str) -> None:
    token = exchange(oidc_server, issuer.mint(oidc_server.url), allowed).json()["token"]
    rule = {"repository": "a/b", "ref": "refs/heads/x"}
    path = f"/api/v1/workspaces/{allowed}/github-oidc"
    for method, body in [("GET", None), ("POST", rule)]:
        answer = oidc_server.api(method, path, token=token, json=body)
        assert answer.status_code == 403, answer.text
        assert answer.json()["code"] == "forbidden"


def test_login_in_a_job_exports_a_token_that_deploys(
    cli: Cli, issuer: Issuer, allowed: str, basic_ws: Path, tmp_path: Path
) -> None:
    env = actions_env(issuer, tmp_path)
    # the job's own environment: no dockyard token of its own
    login = cli.run("login", "--github-oidc", env={**env, "DOCKYARD_TOKEN": ""})

    exported = github_env(tmp_path / "github_env")
    token = exported["DOCKYARD_TOKEN"]
    assert login.stdout.splitlines()[0] == f"::add-mask::{token}"
    assert exported["DOCKYARD_SERVER"] == cli.server.url
    assert exported["DOCKYARD_WORKSPACE"] == allowed
    assert "deploy token on workspace 'octo'" in login.stdout

    job = Cli(cli.server, cli.cache_home, tmp_path / "job-config", allowed, token=token)
    deployed = job.json("deploy", cwd=basic_ws)
    assert len(deployed["deployment_version"]) == 40 and deployed["commit"]
    assert "jobs.__deployment__.hello" in deployed["added"]

    # where the token came from is in its name; it lives 15 minutes
    listed = {t["prefix"]: t for t in cli.json("token", "list")}
    row = listed[token[:7]]
    assert row["name"] == f"github-oidc:{REPO}@refs/heads/main run 4242"
    assert row["workspace"] == allowed and row["role"] == "deploy"
    assert row["expires_at"] is not None
    # limited to its workspace
    other = cli.server.api("GET", "/api/v1/workspaces", token=token).json()
    assert [w["name"] for w in other] == [allowed]


def test_a_pull_request_gets_a_read_token(
    cli: Cli, issuer: Issuer, allowed: str, tmp_path: Path
) -> None:
    issuer.claims = {"ref": "refs/pull/7/merge", "event_name": "pull_request"}
    try:
        cli.run("login", "--github-oidc", env=actions_env(issuer, tmp_path))
    finally:
        issuer.claims = {}
    token = github_env(tmp_path / "github_env")["DOCKYARD_TOKEN"]

    me = cli.server.api("GET", "/api/v1/me", token=token).json()
    assert me["role"] == "read"


def test_login_outside_a_job_says_what_is_missing(cli: Cli, allowed: str) -> None:
    missing = {"ACTIONS_ID_TOKEN_REQUEST_URL": "", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": ""}
    error = cli.fails("login", "--github-oidc", env=missing)

    assert "ACTIONS_ID_TOKEN_REQUEST_URL" in error and "id-token: write" in error


def test_an_issued_token_expires(
    tmp_path: Path, issuer: Issuer, cache_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    srv = make_server(
        tmp_path, DOCKYARD_GITHUB_OIDC_ISSUER=issuer.url, DOCKYARD_GITHUB_OIDC_TOKEN_S="1"
    ).start()
    try:
        admin = Cli(srv, cache_home, tmp_path / "cfg", "brief")
        admin.run("workspace", "create", "brief")
        allow = ("workspace", "allow-github-oidc", "brief")
        admin.run(*allow, "--repo", REPO, "--ref", "refs/heads/main")
        given = exchange(srv, issuer.mint(srv.url), "brief").json()
        lifetime = _seconds(given["expires_at"]) - _seconds(given["created_at"])
        assert 0.9 <= lifetime <= 1.1

        # wait (not an assertion on time) until the server's clock passed the expiry
        deadline = time.monotonic() + 60
        answer = srv.api("GET", "/api/v1/me", token=given["token"])
        while answer.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            answer = srv.api("GET", "/api/v1/me", token=given["token"])

        assert answer.status_code == 401
        assert answer.json()["code"] == "token_expired"
    finally:
        srv.stop()


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


# the composite action, run as GitHub Actions runs a composite action's steps -----------------
ACTION = REPO_ROOT / ".github" / "actions" / "deploy" / "action.yml"
EXPRESSION = re.compile(r"\$\{\{\s*([a-z_.-]+)\s*\}\}")


def evaluate(value: str, context: dict[str, str]) -> str:
    """The action's expressions, which are all plain context lookups; anything else fails."""
    return EXPRESSION.sub(lambda m: context[m.group(1)], str(value))


def run_action(inputs: dict[str, str], env: dict[str, str], workspace_dir: Path) -> None:
    action = yaml.safe_load(ACTION.read_text())
    context = {f"inputs.{k}": str(v.get("default", "")) for k, v in action["inputs"].items()}
    context.update({f"inputs.{k}": v for k, v in inputs.items()})
    context["github.action_path"] = str(ACTION.parent)
    for step in action["runs"]["steps"]:
        assert step["shell"] == "bash" and "${{" not in step["run"], step["name"]
        step_env = {**env, **_exported(env["GITHUB_ENV"])}
        step_env.update({k: evaluate(v, context) for k, v in step.get("env", {}).items()})
        cwd = workspace_dir / evaluate(step.get("working-directory", "."), context)
        # what the runner does for `shell: bash`
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=cwd,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"{step['name']}:\n{proc.stdout}\n{proc.stderr}"


def _exported(path: str) -> dict[str, str]:
    return github_env(Path(path)) if Path(path).exists() else {}


def test_the_actions_steps_write_a_pull_requests_plan_to_the_summary(
    cli: Cli, issuer: Issuer, basic_ws: Path, tmp_path: Path
) -> None:
    cli.run("workspace", "create", "octo-pr", env={"DOCKYARD_WORKSPACE": "octo-pr"})
    cli.run("workspace", "allow-github-oidc", "octo-pr", "--repo", REPO,
            "--ref", "refs/pull/*/merge", "--role", "read")  # fmt: skip
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    summary = tmp_path / "step_summary.md"
    env = {
        **base_env(),
        **actions_env(issuer, tmp_path),
        "GITHUB_WORKSPACE": str(basic_ws),
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_REF": "refs/pull/7/merge",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_RUN_ID": "777",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(tmp_path / "github_output"),
        "GITHUB_PATH": str(tmp_path / "github_path"),
        "RUNNER_TEMP": str(runner_temp),
        "XDG_CACHE_HOME": str(cli.cache_home),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    issuer.claims = {"ref": "refs/pull/7/merge", "event_name": "pull_request", "run_id": "777"}
    try:
        run_action(
            {"server": cli.server.url, "workspace": "octo-pr", "dry-run": "true"}, env, basic_ws
        )
    finally:
        issuer.claims = {}

    text = summary.read_text()
    assert "### dockyard plan for workspace `octo-pr` (dry run: nothing deployed)" in text
    assert "  added     jobs.__deployment__.hello" in text
    assert "dry run: would change code and configuration" in text
    token = github_env(tmp_path / "github_env")["DOCKYARD_TOKEN"]
    assert token not in text
    # a plan deploys nothing
    assert cli.json("info", env={"DOCKYARD_WORKSPACE": "octo-pr"})["deployment_version"] is None


def test_the_action_and_the_example_workflow_pass_actionlint_and_zizmor(tmp_path: Path) -> None:
    tools = Path(sys.executable).parent
    for tool in ("actionlint", "zizmor", "shellcheck"):
        assert (tools / tool).exists(), f"{tool} missing: `make venv` installs the dev extra"
    workflow = REPO_ROOT / "examples" / "github-actions" / "dockyard.yml"
    # actionlint checks workflows: one in a repository holding the action checks its inputs
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copytree(ACTION.parent, repo / ".github" / "actions" / "deploy")
    local = workflow.read_text().replace(
        re.search(r"uses: (\S+/\.github/actions/deploy@\S+)", workflow.read_text())[1],  # type: ignore[index]
        "./.github/actions/deploy",
    )
    (repo / ".github" / "workflows" / "dockyard.yml").write_text(local)
    (repo / ".github" / "workflows" / "typo.yml").write_text(local.replace("dry-run:", "dryrun:"))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    path_env = {**base_env(), "PATH": f"{tools}:{os.environ['PATH']}"}
    typo = subprocess.run(
        [str(tools / "actionlint"), ".github/workflows/typo.yml"],
        cwd=repo,
        env=path_env,
        capture_output=True,
        text=True,
    )
    # proof that actionlint reads the action's inputs (an unknown one is an error)
    assert typo.returncode == 1 and 'input "dryrun" is not defined' in typo.stdout, typo.stdout
    for args, cwd in [
        ([str(tools / "actionlint"), str(workflow)], REPO_ROOT),
        ([str(tools / "actionlint"), ".github/workflows/dockyard.yml"], repo),
        ([str(tools / "zizmor"), "--offline", str(workflow), str(ACTION)], REPO_ROOT),
    ]:
        proc = subprocess.run(args, cwd=cwd, env=path_env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    for step in yaml.safe_load(ACTION.read_text())["runs"]["steps"]:
        proc = subprocess.run(
            [str(tools / "shellcheck"), "-s", "bash", "-"],
            input=step["run"],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, f"{step['name']}:\n{proc.stdout}"
