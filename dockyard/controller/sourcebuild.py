"""A source commit's manifest, built the way `dockyard deploy` builds it on a laptop, but on
the server: the commit's files are written to a scratch folder, an environment with the
commit's declared dependencies is built with uv (cached under the data dir), and the shim runs
dlt's file selectors and manifest worker there (`controller/inspection.py`, the CLI's code).

The workspace's code is imported only in that child process, never in the controller, and
the child gets a clean environment (none of the server's variables, tokens or keys). When the
server has bubblewrap (`Controller.isolation`) the child runs in the same sandbox a job does:
it sees the system, the environment, the checkout (read-only) and its own stage and scratch
folders, and, as root, runs as the workspace's uid; without it, it runs as the server's user,
as a local-executor job then does (docs/security.md). A workspace on the Docker executor
gets neither: the shim runs in a container of its own image (`sourcecontainer`).
"""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dockyard.controller import inspection, sourcecontainer, sourcemirror
from dockyard.controller.executors import sandbox
from dockyard.controller.gitstore import FileEntry
from dockyard.controller.inspection import DEPLOYMENT_FILE, Inspection
from dockyard.errors import InvalidInput
from dockyard.shim import SHIM

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True, slots=True)
class Builder:
    """Where environments and the shim's private `pathspec` are cached, and the sandbox."""

    envs_dir: Path
    shimlib_dir: Path
    isolation: sandbox.Isolation
    max_workspace_bytes: int
    container: "sourcecontainer.InContainer | None" = None  # a workspace on Docker

    @contextmanager
    def inspect(self, files: dict[str, FileEntry], workspace_id: int) -> Iterator[Inspection]:
        """The commit's files inspected by the shim in their own environment (the staged
        files are removed on exit)."""
        if DEPLOYMENT_FILE not in files:
            raise InvalidInput(
                f"no {DEPLOYMENT_FILE} in the source folder; write one that declares jobs with"
                " `from dlt.hub import run` (or set the link's --path to the workspace folder)"
            )
        with (
            tempfile.TemporaryDirectory(prefix="dockyard-source-") as checkout,
            tempfile.TemporaryDirectory(prefix="dockyard-scratch-") as scratch,
        ):
            root, work = Path(checkout), Path(scratch)
            sourcemirror.write_files(files, root)
            (work / "home").mkdir()
            (work / "tmp").mkdir()
            python, wrap, run = self._where(root, work, workspace_id)
            env = {
                "PATH": f"{Path(python).parent}:{SYSTEM_PATH}",
                "HOME": str(work / "home"),
                "TMPDIR": str(work / "tmp"),
                "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
            with inspection.inspect(
                root, python, ["__deployment__"], self.shimlib_dir, wrap, env, run
            ) as seen:
                inspection.check_files(seen, self.max_workspace_bytes)
                yield seen

    def _where(
        self, root: Path, work: Path, workspace_id: int
    ) -> tuple[str, inspection.Wrap | None, inspection.Runner | None]:
        """The interpreter and how the shim runs: in a container of the workspace's image
        (Docker executor), else on the host in an environment of `envs_dir`, sandboxed."""
        if self.container is not None:
            image = self.container.image(root)
            shimlib = Path(inspection.pathspec_home(self.shimlib_dir))
            run = self.container.runner(image, root, work, shimlib, workspace_id)
            return sourcecontainer.PYTHON, None, run
        python = inspection.build_env(root, self.envs_dir)
        return python, self._sandbox(Path(python), root, work, workspace_id), None

    def _sandbox(
        self, python: Path, root: Path, work: Path, workspace_id: int
    ) -> inspection.Wrap | None:
        if not self.isolation.isolated:
            return None
        env_dir = python.parent.parent
        sandbox.readable(env_dir)
        shimlib = Path(inspection.pathspec_home(self.shimlib_dir))
        sandbox.readable(shimlib)
        read_only = [env_dir, root, SHIM.parent, shimlib, Path(inspection.uv_bin()).parent]
        home = sandbox.interpreter_home(env_dir)
        if home is not None:
            read_only.append(home)
        isolation = self.isolation

        def wrap(argv: list[str], stage: Path) -> list[str]:
            if isolation.separate_users:
                uid = isolation.uid(workspace_id)
                for path in (root, work, stage):
                    sandbox.give(path, uid, uid)
            view = sandbox.View(tuple(read_only), (work, stage), work / "tmp", root)
            wrapped = sandbox.command(isolation, view, argv, workspace_id)
            at = wrapped.index("--info-fd")  # no supervisor here to read it
            return wrapped[:at] + wrapped[at + 2 :]

        return wrap
