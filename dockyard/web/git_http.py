"""git smart HTTP at `/git/<workspace>.git`, served by `git http-backend` (CGI).

Tokens work as HTTP Basic passwords (what git and libgit2 send after a 401) or as bearer
headers. A finished receive-pack is the push event: the workspace is reconciled right away.
"""

import asyncio
import contextlib
import os
import shutil

from fastapi import APIRouter, BackgroundTasks, Request, Response

from dockyard.controller import auth, isolation, workspaces
from dockyard.errors import DockyardError, NotFound, Unauthorized
from dockyard.web.deps import controller, token_from

router = APIRouter()
BACKEND = "/usr/lib/git-core/git-http-backend"


def _backend() -> list[str]:
    if os.path.exists(BACKEND):
        return [BACKEND]
    git = shutil.which("git")
    if git is None:
        raise DockyardError("git is not installed on the server; install it to serve pushes")
    return [git, "http-backend"]


def _needed_role(path: str, query: str) -> str:
    pushing = path.endswith("git-receive-pack") or "service=git-receive-pack" in query
    return "deploy" if pushing else "read"


@router.api_route("/git/{repo}/{path:path}", methods=["GET", "POST"], include_in_schema=False)
async def git_http(repo: str, path: str, request: Request, tasks: BackgroundTasks) -> Response:
    ctl = controller(request)
    name = repo.removesuffix(".git")
    query = request.url.query
    try:
        with ctl.db.session() as session:
            principal = auth.authenticate(session, token_from(request))
            ws = workspaces.get(session, name)
            role = _needed_role(path, query)
            principal.require(role, ws.id)
            if role == "deploy":
                isolation.check_deploy(principal, ctl.isolation, ctl.executor_of(ws), ctl.settings)
    except Unauthorized as exc:
        return Response(
            exc.message + "\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="dockyard"'},
        )
    except NotFound as exc:
        return Response(exc.message + "\n", status_code=404)
    except DockyardError as exc:
        return Response(exc.message + "\n", status_code=403)
    body = await request.body()
    status, headers, payload = await _cgi(
        ctl.settings.repos_dir, f"/{name}.git/{path}", request, query, body
    )
    if path == "git-receive-pack" and status == 200:
        tasks.add_task(_reconcile_quietly, ctl, name)
    return Response(payload, status_code=status, headers=headers)


def _reconcile_quietly(ctl: object, name: str) -> None:
    from dockyard.controller.core import Controller

    assert isinstance(ctl, Controller)
    with contextlib.suppress(DockyardError):  # recorded on the workspace; the sweep retries
        ctl.reconciler.reconcile(name)


async def _cgi(
    root: object, path_info: str, request: Request, query: str, body: bytes
) -> tuple[int, dict[str, str], bytes]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": path_info,
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": query,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_USER": "dockyard",
        "REMOTE_ADDR": request.client.host if request.client else "",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
    }
    if "content-encoding" in request.headers:
        env["HTTP_CONTENT_ENCODING"] = request.headers["content-encoding"]
    if "git-protocol" in request.headers:
        env["GIT_PROTOCOL"] = request.headers["git-protocol"]
    proc = await asyncio.create_subprocess_exec(
        *_backend(),
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _err = await proc.communicate(body)
    head, _, payload = out.partition(b"\r\n\r\n")
    if not _:
        head, _, payload = out.partition(b"\n\n")
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        elif key:
            headers[key.strip()] = value.strip()
    return status, headers, payload
