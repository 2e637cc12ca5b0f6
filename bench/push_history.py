"""A push of many commits through the receive hook, which checks every new commit.

The hook (`dockyard.controller.prereceive`) walks each new commit of a push and checks each
distinct (tree, path) and blob once, so a long history should cost about what its changes
cost, not one whole tree per commit. This pushes, with the stock `git push` into a bare
workspace repository made as the server makes it (`gitstore.init_bare`, the hook installed
by `workspaces.HookInstaller`):

- the first deploy of a 300-file workspace (the hook walks the whole tree),
- one more commit on top of it (the usual deploy), and
- 1,000 more commits in one push, each changing one code file (every tenth also
  config.toml, every hundredth the manifest),

each timed against the same push into a repository without the hook (the floor: git's own
receive). N repetitions, fresh repositories every time; the client history is built once.

Usage: python bench/push_history.py [-n 3] [--commits 1000] [--json-out FILE]
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pygit2
from _common import Report, int_arg, json_out, median, print_machine, timed

from dockyard.controller import gitstore, manifests, workspaces
from dockyard.controller.gitstore import FileEntry

LAUNCHER = "dlt._workspace.deployment.launchers.job"
FILES = 300
TARGET_PER_1000_S = 10.0  # hook time for 1,000 more commits than one


def job(name: str) -> dict[str, Any]:
    return {
        "engine_version": 2,
        "job_ref": f"jobs.__deployment__.{name}",
        "entry_point": {
            "module": "__deployment__",
            "function": name,
            "job_type": "batch",
            "launcher": LAUNCHER,
        },
        "triggers": ["schedule:0 3 * * *"],
        "default_trigger": "schedule:0 3 * * *",
        "execute": {"concurrency": 1},
        "expose": {"tags": ["bench"], "manual": True},
    }


def manifest(version: int) -> bytes:
    jobs = [job(f"job_{i:03d}") for i in range(20 + version)]
    data = {"engine_version": 2, "deployment_module": "__deployment__", "jobs": jobs}
    return manifests.dump_yaml(data).encode()


REQUIREMENTS = json.dumps(
    {
        "engine_version": 2,
        "python_version": "3.11",
        "dlt_version": {"name": "dlt", "extras": [], "version": "1.31.0", "mode": "pypi"},
        "default_groups": ["main"],
        "groups": {"main": ["dlt==1.31.0"]},
        "launcher_requirements": {LAUNCHER: ["dlthub"]},
    }
).encode()


def base_files() -> dict[str, FileEntry]:
    files: dict[str, bytes | FileEntry] = {
        gitstore.MANIFEST: manifest(0),
        gitstore.REQUIREMENTS: REQUIREMENTS,
        "code/__deployment__.py": b"from dlt.hub import run\n",
        "config/config.toml": b'[jobs]\ngreeting = "v0"\n',
    }
    for i in range(FILES):
        files[f"code/pkg_{i % 10}/mod_{i:03d}.py"] = b"VALUE = %d\n" % i + b"# padding\n" * 20
    files["code/pkg_0/latest.py"] = FileEntry(gitstore.MODE_LINK, b"mod_000.py")
    return {
        p: d if isinstance(d, FileEntry) else FileEntry(gitstore.MODE_FILE, d)
        for p, d in files.items()
    }


def client_history(root: Path, commits: int) -> tuple[Path, list[str]]:
    """A client repository: the base commit, then `commits` small ones (one index kept
    across commits, so only the changed files are written)."""
    repo = gitstore.init_bare(root / "client.git")
    index = pygit2.Index()
    for path, entry in base_files().items():
        _stage(repo, index, path, entry)
    shas = [_commit(repo, index, 0)]
    for i in range(1, commits + 1):
        _stage(repo, index, f"code/pkg_{i % 10}/mod_{i % FILES:03d}.py", _file(b"V = %d\n" % i))
        if i % 10 == 0:
            _stage(repo, index, "config/config.toml", _file(b'[jobs]\ng = "v%d"\n' % i))
        if i % 100 == 0:
            _stage(repo, index, gitstore.MANIFEST, _file(manifest(i // 100)))
        shas.append(_commit(repo, index, i))
    return Path(repo.path), shas


def _file(data: bytes) -> FileEntry:
    return FileEntry(gitstore.MODE_FILE, data)


def _stage(repo: pygit2.Repository, index: pygit2.Index, path: str, entry: FileEntry) -> None:
    oid = repo.create_blob(entry.data)
    index.add(pygit2.IndexEntry(path, oid, pygit2.enums.FileMode(entry.mode)))


def _commit(repo: pygit2.Repository, index: pygit2.Index, i: int) -> str:
    tree = index.write_tree(repo)
    sig = pygit2.Signature("bench", "bench@dockyard.invalid", 1_772_618_400 + 60 * i, 0)
    head = gitstore.head_sha(repo)
    return str(repo.create_commit(gitstore.BRANCH, sig, sig, f"v{i}", tree, [head] if head else []))


def server_repo(root: Path, hooked: bool) -> Path:
    """A workspace repository as `workspaces.create` makes it (with or without the hook)."""
    path = workspaces.repo_path(root / "repos", "bench")
    repo = gitstore.init_bare(path)
    if hooked:
        workspaces.HookInstaller(sys.executable, 50 * 1024 * 1024)(repo)
    return path


def push(client: Path, server: Path, sha: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    elapsed, proc = timed(
        lambda: subprocess.run(
            ["git", "push", "--quiet", str(server), f"{sha}:refs/heads/main"],
            cwd=client,
            env=env,
            capture_output=True,
            text=True,
        )
    )
    if proc.returncode != 0:
        raise RuntimeError(f"push failed: {proc.stderr}")
    return elapsed


def measure(repeat: int, commits: int) -> dict[str, list[float]]:
    """Into fresh repositories holding the base commit: the next commit alone ("one"), or
    all `commits` commits after the base in one push ("many")."""
    found: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        client, shas = client_history(Path(tmp), commits)
        for rep in range(repeat):
            for hooked in (True, False):
                for case, tip in (("one", shas[1]), ("many", shas[-1])):
                    server = server_repo(Path(tmp) / f"{rep}-{hooked}-{case}", hooked)
                    first = push(client, server, shas[0])
                    key = case + ("" if hooked else "_floor")
                    found.setdefault(key, []).append(push(client, server, tip))
                    found.setdefault("first" + ("" if hooked else "_floor"), []).append(first)
    return found


def main(argv: list[str]) -> None:
    repeat, commits = int_arg(argv, "-n", 3), int_arg(argv, "--commits", 1000)
    print_machine()
    found = measure(repeat, commits)
    rep = Report(f"push through the receive hook: 1 commit, then {commits:,} commits")
    rep.add(f"workspace: {FILES} code files in 10 folders, 1 link, config.toml, manifest", "")
    rows = (
        ("first", "first deploy (the whole tree)"),
        ("one", "1 more commit (a usual deploy)"),
        ("many", f"{commits:,} more commits in one push"),
    )
    for key, label in rows:
        rep.add(f"{label}, with the hook, median [s]", median(found[key]), f"{key}_s")
        rep.add(f"{label}, no hook (floor), median [s]", median(found[key + "_floor"]))
    hook = {key: median(found[key]) - median(found[key + "_floor"]) for key, _ in rows}
    per_commit = (hook["many"] - hook["one"]) / max(commits - 1, 1)
    rep.add("hook, 1 more commit (median - floor) [s]", hook["one"], "hook_one_s")
    rep.add(f"hook, {commits:,} more commits (median - floor) [s]", hook["many"], "hook_many_s")
    rep.add("hook per extra commit [ms]", f"{per_commit * 1000:.2f}", "hook_per_commit_ms")
    rep.add("target", f"≤ {TARGET_PER_1000_S:g} s per 1,000 extra commits", "target")
    met = per_commit * 1000 <= TARGET_PER_1000_S
    rep.add("target met", "yes" if met else "NO", "met")
    rep.figures.update({k: [round(v, 4) for v in vs] for k, vs in found.items()})
    rep.show()
    rep.write(json_out(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
