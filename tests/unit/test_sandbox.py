"""The sandbox's command line, the supervisor's reading of an exit, and who may deploy to an
unisolated server: pure logic (tests/security runs the real thing)."""

import stat
from pathlib import Path

import pytest

from dockyard.controller import isolation
from dockyard.controller.auth import Principal
from dockyard.controller.executors import sandbox
from dockyard.errors import Forbidden
from dockyard.settings import Settings
from dockyard.shim import supervisor

VIEW = sandbox.View(
    read_only=(Path("/srv/dy/envs/abc"), Path("/srv/dy/checkouts/ws/sha"), Path("/opt/py")),
    writable=(Path("/srv/dy/var/ws/prod"), Path("/srv/dy/runs/r1/job")),
    tmp=Path("/srv/dy/runs/r1/job/tmp"),
    cwd=Path("/srv/dy/checkouts/ws/sha"),
)
USERS = sandbox.Isolation("users", bwrap="/usr/bin/bwrap", uid_base=1000)
BWRAP = sandbox.Isolation("bwrap", bwrap="/usr/bin/bwrap")


def pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_the_data_dir_is_never_mounted_only_the_runs_own_paths() -> None:
    argv = sandbox.command(BWRAP, VIEW, ["python", "job.py"], 7)
    binds = pairs(argv, "--ro-bind") + pairs(argv, "--bind")
    assert "/srv/dy" not in binds and "/srv/dy/runs" not in binds
    assert set(pairs(argv, "--ro-bind")) >= {str(p) for p in VIEW.read_only}
    assert set(pairs(argv, "--bind")) >= {str(p) for p in VIEW.writable}
    assert argv[argv.index("--chdir") + 1] == str(VIEW.cwd)
    assert argv[-2:] == ["python", "job.py"]


def test_tmp_is_mounted_before_anything_that_may_lie_below_it() -> None:
    argv = sandbox.command(BWRAP, VIEW, ["true"], 1)
    first_bind = argv.index("--bind")
    assert argv[first_bind + 1 : first_bind + 3] == [str(VIEW.tmp), "/tmp"]
    assert first_bind < argv.index("--dir")


def test_paths_to_the_mounts_are_traversable_but_not_listable() -> None:
    argv = sandbox.command(BWRAP, VIEW, ["true"], 1)
    made = pairs(argv, "--dir")
    assert made == [
        "/opt",
        "/srv",
        "/srv/dy",
        "/srv/dy/checkouts",
        "/srv/dy/envs",
        "/srv/dy/runs",
        "/srv/dy/var",
        "/srv/dy/checkouts/ws",
        "/srv/dy/runs/r1",
        "/srv/dy/var/ws",
    ]
    assert set(pairs(argv, "--perms")) == {"0711"}


def test_as_root_the_job_drops_to_its_workspace_user_without_capabilities() -> None:
    argv = sandbox.command(USERS, VIEW, ["python"], 7)
    inner = argv[argv.index("--") + 1 :]
    assert inner[0] == sandbox.SETPRIV
    assert {"--reuid=1007", "--regid=1007", "--clear-groups", "--no-new-privs"} <= set(inner)
    assert "--bounding-set=-all" in inner and inner[-1] == "python"
    assert sandbox.SETPRIV not in sandbox.command(BWRAP, VIEW, ["python"], 7)


def test_own_pid_namespace_and_a_session_for_the_signals() -> None:
    argv = sandbox.command(BWRAP, VIEW, ["true"], 1)
    assert {"--unshare-pid", "--new-session", "--die-with-parent"} <= set(argv)
    assert argv[argv.index("--info-fd") + 1] == sandbox.INFO_FD == supervisor.INFO_FD
    assert "--unshare-net" not in argv  # jobs load data over the network


def test_interpreter_home_is_read_from_pyvenv_cfg(tmp_path: Path) -> None:
    (tmp_path / "pyvenv.cfg").write_text("home = /opt/python/3.11/bin\nversion = 3.11.7\n")
    assert sandbox.interpreter_home(tmp_path) == Path("/opt/python/3.11")
    assert sandbox.interpreter_home(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("code", "sandboxed", "expected"),
    [
        (0, True, {"returncode": 0, "signal": None}),
        (3, True, {"returncode": 3, "signal": None}),
        (137, True, {"returncode": None, "signal": 9}),
        (143, True, {"returncode": None, "signal": 15}),
        (137, False, {"returncode": 137, "signal": None}),
        (-9, False, {"returncode": None, "signal": 9}),
    ],
)
def test_a_sandboxed_exit_above_128_is_a_signal(
    code: int, sandboxed: bool, expected: dict[str, object]
) -> None:
    assert supervisor.outcome(code, sandboxed) == expected


def test_an_unsandboxed_server_refuses_a_workspace_token_deploy_to_local() -> None:
    none = sandbox.Isolation("none", "bubblewrap (bwrap) is not installed")
    limited = Principal(token_id=1, role="deploy", workspace_id=3)
    with pytest.raises(Forbidden, match=r"cannot isolate jobs .* bubblewrap"):
        isolation.check_deploy(limited, none, "local", Settings())
    isolation.check_deploy(limited, none, "docker", Settings())
    isolation.check_deploy(limited, BWRAP, "local", Settings())
    isolation.check_deploy(limited, none, "local", Settings(unisolated_deploys="allow"))
    isolation.check_deploy(Principal(2, "deploy", None), none, "local", Settings())


def test_an_unknown_sandbox_setting_is_refused_with_the_choices() -> None:
    with pytest.raises(Exception, match="auto, bwrap, off"):
        sandbox.probe("maybe")
    assert not sandbox.probe("off").isolated


def test_an_environment_is_opened_for_reading_never_for_writing(tmp_path: Path) -> None:
    package = tmp_path / "lib" / "pkg"
    package.mkdir(parents=True, mode=0o700)
    module = package / "__init__.py"
    module.write_text("x = 1\n")
    module.chmod(0o600)
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o700)
    lock = tmp_path / ".lock"
    lock.touch()
    lock.chmod(0o666)
    sandbox.readable(tmp_path)
    assert stat.S_IMODE(lock.stat().st_mode) == 0o644
    assert stat.S_IMODE(module.stat().st_mode) == 0o644
    assert stat.S_IMODE(package.stat().st_mode) == 0o755
    assert stat.S_IMODE(tool.stat().st_mode) == 0o755
