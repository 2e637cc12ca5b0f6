"""A git host on loopback for tests that fetch from "GitHub": real bare repositories served
by `git http-backend` (git's own smart HTTP server, as CGI) behind a small threaded HTTP
server, with HTTP Basic auth as GitHub takes a token (`x-access-token:<token>`).

Request bodies are read whole, chunked or not (libgit2 sends chunked bodies), and handed to
the CGI; its answer is relayed as it is. Counts of requests let tests see what was fetched.
"""

import base64
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

BACKEND = "/usr/lib/git-core/git-http-backend"


@dataclass
class GitHost:
    root: Path
    token: str | None = None
    requests: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    port: int = 0  # 0: any free one; a stopped host's port to bring it back where it was

    def start(self) -> "GitHost":
        self.root.mkdir(parents=True, exist_ok=True)
        host = self

        class Handler(_Handler):
            githost = host

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def url(self, name: str) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}.git"

    def api_url(self) -> str:
        """What a link's `--api-url` is for this host: repositories are fetched from
        `<host>/<OWNER/NAME>.git`, as from GitHub Enterprise Server's `<host>/api/v3`."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v3"

    def seed(self, name: str, source: Path, work: Path) -> str:
        """Create `name` and push `source`'s files to its `main` as one commit (a developer's
        first push); returns the commit."""
        self.create(name)
        shutil.copytree(source, work, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
        git("init", "-q", "-b", "main", cwd=work)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "first", cwd=work)
        self.push(name, work)
        return git("rev-parse", "HEAD", cwd=work)

    def push(self, name: str, work: Path, refspec: str = "HEAD:main", force: bool = False) -> None:
        """Push from the clone `work` to `name`, with the token when the host asks for one."""
        extra = ["-c", "http.extraHeader=" + self.auth_header()] if self.token else []
        git(*extra, "push", "-q", *(["-f"] if force else []), self.url(name), refspec, cwd=work)

    def commit_and_push(self, name: str, work: Path, message: str) -> str:
        """Commit everything in the clone `work` and push it to `name`'s `main` (a
        developer's next push); returns the commit."""
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", message, cwd=work)
        self.push(name, work)
        return git("rev-parse", "HEAD", cwd=work)

    def create(self, name: str) -> Path:
        """A bare repository whose HEAD is `main`, accepting pushes."""
        path = self.root / f"{name}.git"
        git("init", "--quiet", "--bare", "-b", "main", str(path))
        git("-C", str(path), "config", "http.receivepack", "true")
        return path

    def auth_header(self) -> str:
        raw = f"x-access-token:{self.token}".encode()
        return "Authorization: Basic " + base64.b64encode(raw).decode()


class _Handler(BaseHTTPRequestHandler):
    githost: GitHost

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._cgi(b"")

    def do_POST(self) -> None:
        self._cgi(self._body())

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        if self.githost.token is None:
            return True
        return self.headers.get("Authorization") == self.githost.auth_header().split(": ", 1)[1]

    def _cgi(self, body: bytes) -> None:
        self.githost.requests.append(f"{self.command} {self.path}")
        if not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="githost"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        parts = urlsplit(self.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.githost.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
        }
        proc = subprocess.run([BACKEND], input=body, capture_output=True, env=env, check=False)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """The stock git client; fails the test with git's own message."""
    full = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        **(env or {}),
    }
    proc = subprocess.run(["git", *args], cwd=cwd, env=full, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()
