"""The local executor's sandbox: what a job can see, and who it runs as.

A job on the local executor is started inside bubblewrap (`bwrap`, Debian's `bubblewrap`):
a fresh mount namespace that holds only the system (`/usr`, `/etc`, the interpreter), the
run's environment, its checkout and its configuration (read-only), its workspace+profile data
folder and its own scratch folder (read-write). The server's data dir (keys, database,
repositories, other workspaces' data, other runs' folders) is not in that namespace at all,
so there is nothing to read, whatever the file modes. The job also gets its own PID
namespace: it cannot see or signal the server or other runs, and when the job's process ends
the kernel kills everything it left behind (double forks and `setsid` included).

When the server runs as root, the job also runs as a separate OS user per workspace
(`sandbox_uid_base + workspace id`, no capabilities, `no_new_privs`; the Docker executor uses
the same uid), so what a job writes is owned by its workspace's uid, and an escape from the
mount namespace still meets ordinary Unix permissions (the data dir is 0700). Without root,
bubblewrap uses a user namespace and the job keeps the server's uid: the mount namespace is
then the whole boundary.

Why bubblewrap rather than only separate users: users alone still show every path of the
host (a 0700 data dir must then be made traversable for the job's folders inside it, and
every mistake in a mode is a leak), need root, and do nothing for lingering processes; a
mount + PID namespace shows the job only what it needs and works without root wherever
unprivileged user namespaces are allowed. Both together when the server can.
"""

import os
import shutil
import stat
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import DockyardError

INFO_FD = "{info_fd}"  # the supervisor puts the number of bwrap's --info-fd pipe here
SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SETPRIV = "/usr/bin/setpriv"
TMP = "/tmp"  # noqa: S108 - in the sandbox: the run's own scratch folder
DEFAULT_UID_BASE = 1_800_000_000


@dataclass(frozen=True, slots=True)
class Isolation:
    """How this server keeps jobs on the local executor away from itself."""

    mode: str  # "users" (bwrap + a uid per workspace), "bwrap" (bwrap only), "none"
    reason: str = ""  # why there is no isolation
    bwrap: str = "bwrap"
    uid_base: int = DEFAULT_UID_BASE

    @property
    def isolated(self) -> bool:
        return self.mode != "none"

    @property
    def separate_users(self) -> bool:
        return self.mode == "users"

    def uid(self, workspace_id: int) -> int:
        return self.uid_base + workspace_id

    def describe(self) -> str:
        if self.mode == "users":
            return (
                "jobs on the local executor run in a bubblewrap sandbox, as a separate user"
                f" per workspace (uid {self.uid_base} + workspace id)"
            )
        if self.mode == "bwrap":
            return "jobs on the local executor run in a bubblewrap sandbox (user namespace)"
        return (
            f"WARNING: jobs on the local executor are NOT isolated from the server ({self.reason});"
            " they can read its keys and database. Workspace-limited tokens cannot deploy to"
            " the local executor unless DOCKYARD_UNISOLATED_DEPLOYS=allow (docs/security.md)"
        )


def probe(setting: str = "auto", uid_base: int = DEFAULT_UID_BASE) -> Isolation:
    """What this machine allows: `setting` is auto (bwrap when it works), bwrap (required:
    the server refuses to start without it) or off."""
    if setting not in ("auto", "bwrap", "off"):
        raise DockyardError(f"DOCKYARD_SANDBOX={setting!r} is not one of auto, bwrap, off")
    found = _works(uid_base) if setting != "off" else Isolation("none", "DOCKYARD_SANDBOX=off")
    if setting == "bwrap" and not found.isolated:
        raise DockyardError(
            f"DOCKYARD_SANDBOX=bwrap but {found.reason}; install bubblewrap"
            " (apt-get install bubblewrap) or set DOCKYARD_SANDBOX=auto"
        )
    return found


def _works(uid_base: int) -> Isolation:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Isolation("none", "bubblewrap (bwrap) is not installed")
    root = os.geteuid() == 0
    if root and not os.path.exists(SETPRIV):
        return Isolation("none", f"{SETPRIV} (util-linux) is missing")
    argv = [bwrap, *_system_mounts(), *_namespaces(), "--", "/bin/true"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Isolation("none", f"bwrap did not run: {exc}")
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return Isolation("none", f"bwrap cannot make a sandbox here: {detail[0]}")
    return Isolation("users" if root else "bwrap", bwrap=bwrap, uid_base=uid_base)


@dataclass(frozen=True, slots=True)
class View:
    """The paths a run sees, each at its own host path (so nothing else changes)."""

    read_only: tuple[Path, ...]  # environment, interpreter, checkout, configuration, shim
    writable: tuple[Path, ...]  # workspace+profile data, pycache, the run's scratch folder
    tmp: Path  # mounted at /tmp
    cwd: Path


def command(
    isolation: Isolation, view: View, argv: Sequence[str], workspace_id: int | None
) -> list[str]:
    """`argv` wrapped in bubblewrap (and, as root, in setpriv dropping to the workspace's
    uid). The supervisor fills in the `--info-fd` number and records the sandbox's first
    process, whose process group receives the run's signals."""
    # /tmp first: a mount below it (a data dir under /tmp) then lands on top of it
    mounts = ["--bind", str(view.tmp), TMP]
    targets = [*view.read_only, *view.writable]
    for folder in _parents(targets):
        mounts += ["--perms", "0711", "--dir", str(folder)]  # a path through, no listing
    for path in sorted(view.read_only, key=lambda p: len(p.parts)):
        mounts += ["--ro-bind", str(path), str(path)]
    for path in sorted(view.writable, key=lambda p: len(p.parts)):
        mounts += ["--bind", str(path), str(path)]
    wrapped = list(argv)
    if isolation.separate_users:
        uid = isolation.uid(workspace_id or 0)
        wrapped = [
            SETPRIV,
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
            *wrapped,
        ]
    return [
        isolation.bwrap,
        *_system_mounts(),
        *mounts,
        "--chdir",
        str(view.cwd),
        *_namespaces(),
        "--info-fd",
        INFO_FD,
        "--",
        *wrapped,
    ]


def _namespaces() -> list[str]:
    # the job's signals go to the process group of bwrap's init (--new-session); init
    # ignores SIGTERM from outside and dies only with the job or by SIGKILL, and with it
    # every process of the namespace
    return [
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "dockyard-run",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--new-session",
        "--die-with-parent",
    ]


def _system_mounts() -> list[str]:
    """The host's system folders, read-only (symlinks of a merged /usr kept as links)."""
    args: list[str] = []
    for name in SYSTEM:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    resolv = Path("/etc/resolv.conf")
    if resolv.is_symlink() and resolv.exists() and not under(resolv.resolve(), SYSTEM):
        args += ["--ro-bind", str(resolv.resolve()), str(resolv.resolve())]
    return args


def _parents(paths: Iterable[Path]) -> list[Path]:
    """Folders to create (0711, empty) so each mount has a path to it: the ancestors of
    the targets that no system mount already provides, shallowest first."""
    wanted: set[Path] = set()
    for path in paths:
        for parent in path.parents:
            if parent not in (Path("/"), Path(TMP)) and not under(parent, SYSTEM):
                wanted.add(parent)
    return sorted(wanted, key=lambda p: (len(p.parts), str(p)))


def under(path: Path, roots: Iterable[str]) -> bool:
    return any(path == Path(r) or Path(r) in path.parents for r in roots)


def interpreter_home(env_dir: Path) -> Path | None:
    """The base interpreter's prefix of a virtualenv (its `pyvenv.cfg` `home` is the
    prefix's bin folder), which the sandbox must show read-only."""
    try:
        lines = (env_dir / "pyvenv.cfg").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return Path(value.strip()).resolve().parent
    return None


def workspace_user(uid_base: int, workspace_id: int | None) -> int | None:
    """The uid a workspace's jobs run as on either executor: its own when the server is
    root (which can switch users), else None (the server's own uid)."""
    if os.geteuid() != 0 or workspace_id is None:
        return None
    return uid_base + workspace_id


def give_all(paths: Iterable[Path], uid: int) -> None:
    """Folders a run uses, made its workspace user's (skipped when already theirs)."""
    for path in paths:
        if path.exists() and path.stat().st_uid != uid:
            give(path, uid, uid)


def give(path: Path, uid: int, gid: int) -> None:
    """Make a folder tree the job's own (as root): children first, the top last, so a top
    already owned by `uid` means the whole tree is."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in (*files, *dirs):
            os.lchown(os.path.join(root, name), uid, gid)
    os.lchown(path, uid, gid)


def readable(path: Path) -> None:
    """An environment readable by every job's user and writable by its owner only: read
    (and search/exec) bits for others wherever the owner has them, no write bits but the
    owner's (uv makes its `.lock` writable by all). Its files are hardlinks into uv's cache,
    whose modes come from whoever filled it; the packages are public."""
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            _open_up(os.path.join(root, name))
    _open_up(str(path))


def _open_up(path: str) -> None:
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return
    wanted = (mode | ((mode & 0o500) >> 6) | ((mode & 0o500) >> 3)) & ~0o022
    if wanted != mode:
        os.chmod(path, stat.S_IMODE(wanted))
