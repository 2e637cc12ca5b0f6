"""Server memory while a big push streams through `/git` (issue 10, item 6: git's part).

A real server process; a workspace; one commit holding a file of random bytes (it does not
compress, so the push body is about as big) pushed with the stock `git push` over smart HTTP,
which sends a body that large chunked. The hook refuses the commit (it is over the workspace
limit), but only after the whole body went through the server into git. Figures: the
server's peak resident memory (`VmHWM`) before and after, and the push's wall time.

Usage: python bench/push_body_memory.py [--mb 150] [--json-out FILE]
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pygit2
from _common import Report, int_arg, json_out, print_machine, running_server, timed

from dockyard.controller import gitstore


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def client_repo(root: Path, size: int) -> Path:
    repo = gitstore.init_bare(root / "client.git")
    files = {
        "code/__deployment__.py": gitstore.FileEntry(gitstore.MODE_FILE, b"x = 1\n"),
        "code/noise.bin": gitstore.FileEntry(gitstore.MODE_FILE, os.urandom(size)),
    }
    tree = gitstore.write_tree(repo, files)
    sig = pygit2.Signature("bench", "bench@dockyard.invalid")
    repo.create_commit(gitstore.BRANCH, sig, sig, "noise", tree, [])
    return Path(repo.path)


def main(argv: list[str]) -> None:
    megabytes = int_arg(argv, "--mb", 150)
    print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        client = client_repo(root, megabytes * 1024 * 1024)
        with running_server(root) as server:
            server.api("POST", "/api/v1/workspaces", json={"name": "big"})
            assert server.proc is not None
            before = peak_rss_mb(server.proc.pid)
            header = f"http.extraHeader=Authorization: Bearer {server.token}"
            env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
            elapsed, proc = timed(
                lambda: subprocess.run(
                    ["git", "-c", header, "push", "-q", f"{server.url}/git/big.git", "main"],
                    cwd=client,
                    env=env,
                    capture_output=True,
                    text=True,
                )
            )
            after = peak_rss_mb(server.proc.pid)
    refused = next((ln for ln in proc.stderr.splitlines() if "dockyard:" in ln or "413" in ln), "")
    rep = Report(f"server memory while a {megabytes} MB push streams through /git")
    rep.add("server peak RSS before the push [MB]", round(before, 1), "rss_before_mb")
    rep.add("server peak RSS after the push [MB]", round(after, 1), "rss_after_mb")
    rep.add("growth [MB]", round(after - before, 1), "rss_growth_mb")
    rep.add("push wall time [s]", elapsed, "push_s")
    rep.add("git's answer", refused.strip() or f"exit {proc.returncode}")
    rep.show()
    rep.write(json_out(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
