"""The packages `dlthub deploy` uploads, read the way dlt writes them.

dlt's `PackageBuilder` (dlt/_workspace/deployment/package_builder.py) streams a gzip tar:
one `files/<relative path>` member per regular file or symlink (no folders), then its own
`manifest.yaml`. The client compares the server's `content_hash` with the one it computes
(`compute_package_content_hash`: SHA3-256 over each file's relative path and the base64
SHA3-256 of its bytes, or of a link's target, in path order) and uploads only when they
differ; so the server recomputes it from what it received (never trusts the uploaded
manifest's list), and from the code in the workspace repository for `deployments/latest`.

Every upload is hostile: the archive is read in memory within the request's size bound, its
unpacked size within the workspace bound (a gzip bomb stops at the bound, not at the end),
members other than regular files and symlinks are refused, and every name passes the
receive hook's own path rules (`pushrules.entry_path`: no `..`, no absolute path).

dlt ships a workspace's `.git` folder unless `.gitignore` names it; a deployment never holds a
repository (the hook refuses one), so its files count in the content hash (it must be the one
the client computed) but are left out of the files deployed (`Package.left_out`).
"""

import io
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from dockyard.compat.dlthub import ids
from dockyard.controller import gitstore, pushrules
from dockyard.controller.gitstore import FileEntry
from dockyard.errors import InvalidInput

FILES = "files/"
DLT_MANIFEST = "manifest.yaml"  # dlt's list of the files; recomputed, not read
MAX_MEMBERS = 100_000


@dataclass(frozen=True, slots=True)
class Package:
    files: dict[str, FileEntry]  # relative path -> content (a link's data is its target)
    content_hash: str  # over every file received, as the client computed it
    size_bytes: int  # the archive as uploaded
    left_out: int = 0  # files under a `.git` folder: hashed, not deployed

    @property
    def file_count(self) -> int:
        return len(self.files)


def content_hash(files: Mapping[str, FileEntry]) -> str:
    """`compute_package_content_hash` over `files` (relative paths; a link's data is its
    target, which is what dlt hashes for a link)."""
    return ids.content_hash((path, entry.data) for path, entry in files.items())


def read(data: bytes, what: str, max_bytes: int) -> Package:
    """The files of the package `data`; `what` names it in errors ("the code package")."""
    out: dict[str, FileEntry] = {}
    git: dict[str, FileEntry] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise InvalidInput(f"{what} has more than {MAX_MEMBERS} members")
                if member.name == DLT_MANIFEST:
                    continue
                path, in_git = _relative(member.name, what)
                into = git if in_git else out
                if path in into:
                    raise InvalidInput(f"{what} holds {member.name!r} twice")
                if member.issym():
                    into[path] = FileEntry(gitstore.MODE_LINK, member.linkname.encode("utf-8"))
                    continue
                if not member.isreg():
                    raise InvalidInput(
                        f"{what} holds {member.name!r}, which is not a regular file or a"
                        " symlink; only files and links are deployed"
                    )
                total += member.size
                if total > max_bytes:
                    raise InvalidInput(
                        f"{what} unpacks to more than {max_bytes} bytes; keep data files out"
                        " of the workspace (.gitignore) or raise DOCKYARD_MAX_WORKSPACE_BYTES"
                    )
                stream = tar.extractfile(member)
                body = stream.read(member.size + 1) if stream is not None else b""
                if len(body) != member.size:
                    raise InvalidInput(f"{what} is truncated at {member.name!r}; upload it again")
                executable = bool(member.mode & 0o111)
                mode = gitstore.MODE_EXEC if executable else gitstore.MODE_FILE
                into[path] = FileEntry(mode, body)
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        raise InvalidInput(
            f"{what} is not a gzip tar archive as dlt builds it ({exc}); upload it again"
        ) from None
    return Package(out, content_hash({**out, **git}), len(data), len(git))


def _relative(name: str, what: str) -> tuple[str, bool]:
    """The member's path in the workspace, and whether it lies in a `.git` folder."""
    if not name.startswith(FILES):
        raise InvalidInput(
            f"{what} holds {name!r} outside {FILES}; build it with dlt's package builder"
        )
    parts = name.removeprefix(FILES).split("/")
    path = ""
    for part in parts:  # `.git` is left out, not refused: its name is checked as any other
        checked = "git" if pushrules.is_dot_git(part) else part
        path = pushrules.entry_path(path + "/" if path else "", checked.encode("utf-8"))
    if any(pushrules.is_dot_git(part) for part in parts):
        return "/".join(parts), True
    return path, False
