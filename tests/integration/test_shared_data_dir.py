"""Two processes on one data directory (two controllers sharing it) make the same checkout and
the same environment at the same moment: each is made once (file locks, not just thread
locks), and both processes get it. Real processes, a real git repository, a real uv build."""

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dockyard.controller import gitstore
from tests.integration.helpers import Committer

CHECKOUT = """
import sys, time
from pathlib import Path
import pygit2
from dockyard.controller import gitstore
from dockyard.controller.executors.fleet import Fleet
from dockyard.controller.executors.local import LocalExecutor
from dockyard.controller.prepare import Preparer
from dockyard.settings import Settings

data, repo, sha, go = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
real = gitstore.checkout

def slow_checkout(*args):  # widen the window two unlocked processes would collide in
    print("checked out here", flush=True)
    time.sleep(1.0)
    real(*args)

gitstore.checkout = slow_checkout
settings = Settings(data_dir=data)
executor = LocalExecutor(settings.envs_dir)
preparer = Preparer(settings, Fleet("local", {"local": lambda: executor}), b"k" * 32)
while not go.exists():
    time.sleep(0.01)
print(preparer.checkout(pygit2.Repository(repo), "yard", sha), flush=True)
"""

ENV = """
import sys, time
from pathlib import Path
from dockyard.controller import envs

envs_dir, go = Path(sys.argv[1]), Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
python = envs.EnvBuilder(envs_dir).ensure(envs.EnvSpec("", ("dlt==1.31.0",)), print)
print(python, flush=True)
"""


def together(script: str, args: list[str], go: Path) -> list[list[str]]:
    """Start two processes running `script`, release them at once, return their lines."""
    procs = [
        subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    time.sleep(1.0)  # both are waiting on `go` (or about to): no assertion depends on it
    go.touch()
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
        outputs.append(out.splitlines())
    return outputs


def test_two_processes_check_out_one_commit_once(
    tmp_path: Path, bare_repo: Any, committer: Committer
) -> None:
    sha = committer.commit({f"{gitstore.CODE}/__deployment__.py": b"print('hi')\n"})
    data = tmp_path / "data"
    outputs = together(
        CHECKOUT,
        [str(data), str(tmp_path / "repo.git"), sha, str(tmp_path / "go")],
        tmp_path / "go",
    )
    built = sum(lines.count("checked out here") for lines in outputs)
    assert built == 1, outputs
    target = data / "checkouts" / "yard" / sha
    assert [lines[-1] for lines in outputs] == [str(target)] * 2
    assert (target / "__deployment__.py").read_text() == "print('hi')\n"
    leftovers = [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_two_processes_build_one_environment_once(tmp_path: Path) -> None:
    envs_dir = tmp_path / "envs"
    outputs = together(ENV, [str(envs_dir), str(tmp_path / "go")], tmp_path / "go")
    builds = [sum(line.startswith("building environment") for line in out) for out in outputs]
    assert sorted(builds) == [0, 1], outputs
    pythons = {out[-1] for out in outputs}
    assert len(pythons) == 1
    python = Path(pythons.pop())
    assert python.exists()
    check = subprocess.run(
        [str(python), "-c", "import dlt; print(dlt.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == "1.31.0"
