"""git smart HTTP at `/git/<workspace>.git`, served by `git http-backend` (CGI), streamed.

Tokens work as HTTP Basic passwords (what git and libgit2 send after a 401) or as bearer
headers. Only the three requests of the smart protocol are served (`info/refs?service=…`,
`git-upload-pack`, `git-receive-pack`): the role is decided on exactly what git will run, and
the CGI is given that canonical request, never the client's path or query (no dumb-protocol
file reads, no `..`, no percent-encoded `service=`). A workspace-limited token gets the same
answer for another workspace as for one that does not exist.

Bodies are streamed both ways: the request is piped into the CGI as it arrives (libgit2 sends
it chunked) and capped at `DOCKYARD_MAX_PUSH_BYTES` while it streams (413, checked first on
`Content-Length`); who is asking is known before any body byte is read. A push that goes over
the cap, or whose client goes away, gets an end of input instead of the rest: git fails on the
cut pack the ordinary way, removing its quarantine, and the branch has not moved. A finished
receive-pack is the push event: the workspace is reconciled right away.
"""

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import pygit2
from fastapi import APIRouter, BackgroundTasks, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from dockyard.controller import auth, gitstore, isolation, workspaces
from dockyard.errors import DockyardError, Forbidden, InvalidInput, NotFound, Unauthorized
from dockyard.web.deps import controller, token_from

log = logging.getLogger(__name__)
router = APIRouter()
BACKEND = "/usr/lib/git-core/git-http-backend"
SERVICES = {"git-upload-pack": "read", "git-receive-pack": "deploy"}
MAX_HEAD_BYTES = 64 * 1024  # the CGI's response headers
_QUEUED_CHUNKS = 16  # CGI output read ahead of a slow client (64 KiB chunks)
STOP_GRACE_S = 10.0
MAIN = "main"
LANDED = f"ok refs/heads/{MAIN}\n".encode()
COMMAND_BYTES = 4096  # the push's command lines come first; more is the pack


@dataclass(frozen=True, slots=True)
class GitRequest:
    """One of the three requests of git's smart protocol."""

    service: str
    advertise: bool  # GET info/refs?service=…; else POST of the service itself

    @property
    def role(self) -> str:
        return SERVICES[self.service]

    @property
    def path(self) -> str:
        return "info/refs" if self.advertise else self.service

    @property
    def query(self) -> str:
        return f"service={self.service}" if self.advertise else ""


def parse_request(method: str, path: str, query: str) -> GitRequest:
    """The smart-protocol request `path` and `query` make, as git would decode them."""
    if method == "GET" and path == "info/refs":
        params = parse_qs(query, keep_blank_values=True)
        services = params.get("service", [])
        if set(params) != {"service"} or len(services) != 1 or services[0] not in SERVICES:
            raise InvalidInput(
                "only git's smart protocol is served: info/refs?service=git-upload-pack"
                " or service=git-receive-pack"
            )
        return GitRequest(services[0], advertise=True)
    if method == "POST" and path in SERVICES:
        return GitRequest(path, advertise=False)
    raise NotFound(f"no git endpoint {path!r}; clone or push the URL …/git/<workspace>.git")


def _backend() -> list[str]:
    if os.path.exists(BACKEND):
        return [BACKEND]
    git = shutil.which("git")
    if git is None:
        raise DockyardError("git is not installed on the server; install it to serve pushes")
    return [git, "http-backend"]


@router.api_route("/git/{repo}/{path:path}", methods=["GET", "POST"], include_in_schema=False)
async def git_http(repo: str, path: str, request: Request, tasks: BackgroundTasks) -> Response:
    ctl = controller(request)
    name = repo.removesuffix(".git")
    try:
        git = parse_request(request.method, path, request.url.query)
        principal = _authorize(ctl, request, name, git.role)
    except Unauthorized as exc:
        return _answer(401, exc.message, {"WWW-Authenticate": 'Basic realm="dockyard"'})
    except NotFound as exc:
        return _answer(404, exc.message)
    except InvalidInput as exc:
        return _answer(400, exc.message)
    except DockyardError as exc:
        return _answer(403, exc.message)
    limit = ctl.settings.push_limit
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _too_big(limit)
    cgi = await Cgi.start(str(ctl.settings.repos_dir), name, git, request)
    cgi.pusher = principal.token_id
    return await cgi.respond(request, limit, name, tasks, ctl)


def _authorize(ctl: object, request: Request, name: str, role: str) -> auth.Principal:
    """Who is asking, then whether they may: a name that is no workspace is answered like a
    workspace the token may not see (`usecases.access.workspace` does the same for the API)."""
    from dockyard.controller.assembly import Controller

    assert isinstance(ctl, Controller)
    with ctl.db.session() as session:
        principal = auth.authenticate(session, token_from(request))
        if principal.role == auth.WORKER:  # a worker host fetches any workspace's code
            if role != "read":
                raise Forbidden(auth.WORKER_ONLY)
            return principal
        try:
            if not workspaces.NAME_RE.match(name):
                raise NotFound(f"no workspace {name!r} on this server")
            ws = workspaces.get(session, name)
        except NotFound:
            principal.require(role, -1)
            raise
        principal.require(role, ws.id)
        if role == "deploy":  # code that would run unsandboxed (controller/isolation.py)
            isolation.check_deploy(principal, ctl.isolation, ctl.executor_of(ws), ctl.settings)
    return principal


def _answer(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(message + "\n", status_code=status, headers=headers)


def _too_big(limit: int) -> Response:
    return _answer(
        413,
        f"the push is over the limit of {limit} bytes (DOCKYARD_MAX_PUSH_BYTES); exclude data"
        " files in .gitignore, or ask the operator to raise the limit",
    )


def _reconcile_quietly(ctl: object, name: str, cgi: "Cgi | None" = None) -> None:
    from dockyard.controller.assembly import Controller

    assert isinstance(ctl, Controller)
    if cgi is not None and cgi.landed and cgi.pusher is not None:
        _record_push(ctl, name, cgi.pusher, cgi.commands)
    with contextlib.suppress(DockyardError):  # recorded on the workspace; the sweep retries
        ctl.reconciler.reconcile(name)


def _record_push(ctl: object, name: str, token_id: int, commands: bytes) -> None:
    """The push in the audit log, by the token that made it: git reported `ok` for main, so
    the branch moved from the command's old SHA to its new one."""
    from dockyard.controller import audit, usecases
    from dockyard.controller.assembly import Controller

    assert isinstance(ctl, Controller)
    old, new = push_command(commands)
    if new is None or not _on_main(ctl.settings.repos_dir, name, new):
        return  # git's `ok` line was not its report (it echoed text), or main moved back
    with ctl.db.session() as session:
        actor = audit.token(session, token_id)
    usecases.deployments.record_deploy(ctl, name, actor, new, {"previous": old, "via": "push"})


def _on_main(repos_dir: Path, name: str, sha: str) -> bool:
    """`sha` is main's head or in its history: the push really landed."""
    try:
        repo = gitstore.open_repo(workspaces.repo_path(repos_dir, name))
        head = gitstore.head_sha(repo)
        return head is not None and (head == sha or repo.descendant_of(head, sha))
    except (NotFound, ValueError, KeyError, pygit2.GitError):
        return False


def push_command(data: bytes) -> tuple[str | None, str | None]:
    """(old, new) of the receive-pack command for `refs/heads/main` in the first pkt-lines of
    a push request; (None, None) when it is not there."""
    at = 0
    while at + 4 <= len(data):
        try:
            size = int(data[at : at + 4], 16)
        except ValueError:
            break
        if size < 4 or at + size > len(data):
            break  # a flush packet (0000) ends the commands; a cut line is not read
        line = data[at + 4 : at + size].split(b"\0", 1)[0].strip().decode("latin-1")
        parts = line.split(" ")
        if len(parts) == 3 and parts[2] == f"refs/heads/{MAIN}":
            return (None if set(parts[0]) == {"0"} else parts[0]), parts[1]  # 0…0: created
        at += size
    return None, None


@dataclass
class Cgi:
    """A running `git http-backend` and the tasks that move its bytes."""

    proc: asyncio.subprocess.Process
    git: GitRequest
    out: "asyncio.Queue[bytes | None]"
    tasks: list["asyncio.Task[object]"]
    pusher: int | None = None  # the token that pushes (receive-pack)
    commands: bytes = b""  # the start of the request: the push's commands
    landed: bool = False  # git reported `ok` for main: the branch moved
    _tail: bytes = b""

    @classmethod
    async def start(cls, root: str, name: str, git: GitRequest, request: Request) -> "Cgi":
        proc = await asyncio.create_subprocess_exec(
            *_backend(),
            env=_environment(root, f"/{name}.git/{git.path}", git, request),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # one signal reaches receive-pack, index-pack and the hook
        )
        out: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_QUEUED_CHUNKS)
        cgi = cls(proc, git, out, [])
        assert proc.stdout is not None and proc.stderr is not None
        cgi.tasks = [
            asyncio.create_task(_read_into(proc.stdout, out)),
            asyncio.create_task(_log_stderr(proc.stderr, name)),
        ]
        return cgi

    async def respond(
        self, request: Request, limit: int, name: str, tasks: BackgroundTasks, ctl: object
    ) -> Response:
        try:
            fed = await self.feed(request, limit)
        except Exception:  # e.g. a body limit in front of the route (web/limits.py) tripped
            await self.settle()  # git saw the end of its input: let it clean up, then stop it
            raise
        if fed == "ok":
            try:
                status, headers, rest = await self.head()
            except DockyardError as exc:
                await self.stop()
                return _answer(502, exc.message)
            if status == 200:
                self._pushed(tasks, ctl, name)
            return StreamingResponse(self.body(rest), status_code=status, headers=headers)
        log.warning(
            "git request ended early",
            extra={"action": "git_http", "workspace": name, "reason": fed},
        )
        # git saw the end of its input: a cut pack fails (and git removes its quarantine); a
        # pack that was complete before the extra bytes is a push git went on to check
        answer = await self.settle()
        if b"ok refs/heads/" not in answer:
            return _too_big(limit) if fed == "over the limit" else _answer(400, fed)
        status, headers, rest = _parse_head(answer)
        self._saw(answer)
        self._pushed(tasks, ctl, name)
        return Response(rest, status_code=status, headers=headers)

    def _pushed(self, tasks: BackgroundTasks, ctl: object, name: str) -> None:
        if self.git.service == "git-receive-pack" and not self.git.advertise:
            tasks.add_task(_reconcile_quietly, ctl, name, self)

    async def feed(self, request: Request, limit: int) -> str:
        """Pipe the request body into the CGI as it arrives, then close git's input; "ok", or
        why it stopped early (never more than `limit` bytes are passed on)."""
        stdin = self.proc.stdin
        assert stdin is not None
        total = 0
        try:
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    return "over the limit"
                if len(self.commands) < COMMAND_BYTES:
                    self.commands += chunk[: COMMAND_BYTES - len(self.commands)]
                stdin.write(chunk)
                await stdin.drain()
        except ClientDisconnect:
            return "the client went away"
        except (BrokenPipeError, ConnectionResetError):
            pass  # git stopped reading: its answer says why
        finally:
            stdin.close()
        return "ok"

    async def head(self) -> tuple[int, dict[str, str], bytes]:
        """The CGI's status and headers, and the body bytes read with them."""
        data = b""
        while b"\r\n\r\n" not in data and b"\n\n" not in data:
            chunk = await self.out.get()
            if chunk is None or len(data) > MAX_HEAD_BYTES:
                raise DockyardError("git http-backend gave no valid answer; see the server log")
            data += chunk
        return _parse_head(data)

    async def settle(self) -> bytes:
        """Everything git answers until it exits (a short answer: an aborted push's)."""

        async def collect() -> bytes:
            data = b""
            while (chunk := await self.out.get()) is not None and len(data) < MAX_HEAD_BYTES:
                data += chunk
            return data

        try:
            data = await asyncio.wait_for(collect(), STOP_GRACE_S)
        except TimeoutError:
            data = b""
        await self.stop()
        return data

    async def body(self, rest: bytes) -> AsyncIterator[bytes]:
        try:
            if rest:
                self._saw(rest)
                yield rest
            while (chunk := await self.out.get()) is not None:
                self._saw(chunk)
                yield chunk
            await self.proc.wait()
        finally:
            await self.stop()  # the client went away mid-answer: stop git too

    def _saw(self, chunk: bytes) -> None:
        """Watch git's report for `ok refs/heads/main` (across chunk boundaries)."""
        if self.landed or self.git.service != "git-receive-pack":
            return
        seen = self._tail + chunk
        self.landed = LANDED in seen
        self._tail = seen[-len(LANDED) :]

    async def stop(self) -> None:
        """End git's processes (all of them: receive-pack removes its quarantine on SIGTERM)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.returncode is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), STOP_GRACE_S)
        for task in self.tasks:
            task.cancel()


def _parse_head(data: bytes) -> tuple[int, dict[str, str], bytes]:
    sep = b"\r\n\r\n" if b"\r\n\r\n" in data else b"\n\n"
    head, _, rest = data.partition(sep)
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        elif key:
            headers[key.strip()] = value.strip()
    return status, headers, rest


def _environment(root: str, path_info: str, git: GitRequest, request: Request) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": root,
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": path_info,
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": git.query,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "REMOTE_USER": "dockyard",
        "REMOTE_ADDR": request.client.host if request.client else "",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
    }
    # no CONTENT_LENGTH, even when the client sent one: git then reads to the end of its input,
    # and a body cut short is a truncated pack that receive-pack refuses and cleans up itself
    # (with a length, http-backend dies on the short read and its SIGTERM races the cleanup)
    if "content-encoding" in request.headers:
        env["HTTP_CONTENT_ENCODING"] = request.headers["content-encoding"]
    if "git-protocol" in request.headers:
        env["GIT_PROTOCOL"] = request.headers["git-protocol"]
    return env


async def _read_into(stream: asyncio.StreamReader, out: "asyncio.Queue[bytes | None]") -> None:
    """The CGI's output into a short queue: read while the body is still being fed (git never
    blocks on a full pipe), and no further ahead of a slow client than the queue holds."""
    with contextlib.suppress(OSError, ValueError):
        while chunk := await stream.read(64 * 1024):
            await out.put(chunk)
    await out.put(None)


async def _log_stderr(stream: asyncio.StreamReader, name: str) -> None:
    while line := await stream.readline():
        log.info(
            "git http-backend: %s",
            line[:500].decode("utf-8", "replace").rstrip(),
            extra={"action": "git_http", "workspace": name},
        )
