"""Apps listen on loopback only: the `sitecustomize` the local executor puts first on
`PYTHONPATH` of interactive runs, in real interpreters (it patches the socket module of the
process it runs in, so never in this one)."""

import os
import subprocess
import sys
from pathlib import Path

from dockyard.controller import envs
from dockyard.controller.executors import local
from dockyard.controller.executors.base import RunPlan
from dockyard.shim import LOOPBACK

BIND = """
import socket
for host in ["0.0.0.0", "", "127.0.0.1"]:
    s = socket.socket(socket.AF_INET); s.bind((host, 0)); print(s.getsockname()[0])
six = socket.create_server(("", 0), family=socket.AF_INET6, dualstack_ipv6=True)
print(six.getsockname()[0])
only = socket.socket(socket.AF_INET6)
only.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
only.bind(("::", 0)); print(only.getsockname()[0])
"""


def python(code: str, pythonpath: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def test_wildcard_binds_become_loopback() -> None:
    assert python(BIND, str(LOOPBACK)) == [
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.1",
        "::ffff:127.0.0.1",  # dual-stack: still answers the proxy on 127.0.0.1
        "::1",
    ]


def test_without_the_hook_they_are_wildcards() -> None:
    assert python(BIND, "")[:2] == ["0.0.0.0", "0.0.0.0"]


def test_a_sitecustomize_further_down_the_path_still_runs(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text("print('theirs')\n")

    out = python(
        "import socket; s = socket.socket(); s.bind(('0.0.0.0', 0)); print(s.getsockname()[0])",
        f"{LOOPBACK}{os.pathsep}{tmp_path}",
    )

    assert out == ["theirs", "127.0.0.1"]


def plan(ports: tuple[int, ...]) -> RunPlan:
    where = Path("/nowhere")
    spec = envs.EnvSpec("3.11", ("dlt==1.31.0",))
    return RunPlan("r", where, spec, where, where, where, "launcher", [], {}, "t", ports=ports)


def test_only_interactive_runs_get_the_hook() -> None:
    assert local.app_environment(plan((8000,))) == {"PYTHONPATH": str(LOOPBACK)}
    assert local.app_environment(plan(())) == {}
