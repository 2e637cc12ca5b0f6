"""What a commit may hold: the rules the receive hook applies to every pushed commit, and that
`dockyard deploy` applies before it commits.

Pure functions over names, modes and bytes, so the hook (which walks every new tree once) and
the CLI (which checks the files it is about to commit) share one wording of every refusal.
A commit is stored data that anyone with a read token can clone and that the server checks
out: nothing in it may leave its folder when checked out (`..`, `.git`, links that climb), and
every file the server or a run parses must parse within a bound.
"""

import posixpath
import re
import tomllib
from collections.abc import Callable, Iterable
from typing import Any

from dockyard import crypto
from dockyard.controller import gitstore
from dockyard.errors import InvalidInput

MAX_PATH_BYTES = 4096  # PATH_MAX: a checkout could not write a longer path
MAX_DEPTH = 100  # folders below a top-level entry
MAX_LINK_BYTES = 4096
MODE_TREE = 0o040000
MODE_SUBMODULE = 0o160000
FILE_MODES = (gitstore.MODE_FILE, gitstore.MODE_EXEC)
FOLDERS = (gitstore.CODE, gitstore.CONFIG)
FILES = (gitstore.MANIFEST, gitstore.REQUIREMENTS)
# dlt's own jobs (the workspace dashboard) run a module of the installed dlt
ENVIRONMENT_MODULES = ("dlt.",)


def entry_path(parent: str, raw: bytes) -> str:
    """The path of the tree entry `raw` inside folder `parent` ("" or ending in "/")."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = parent + raw.decode("utf-8", "backslashreplace")
        raise InvalidInput(f"path {shown!r} is not UTF-8; rename the file") from None
    path = parent + name
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise InvalidInput(f"path {path!r} escapes the workspace; remove it or fix the link")
    if is_dot_git(name):
        raise InvalidInput(
            f"{path!r} is git metadata (.git); a deployment never holds a repository inside"
            " it: remove it (vendor the files, or add it to .gitignore)"
        )
    if len(path.encode()) > MAX_PATH_BYTES or path.count("/") > MAX_DEPTH:
        raise InvalidInput(
            f"path {path[:80]!r}… is longer than {MAX_PATH_BYTES} bytes or deeper than"
            f" {MAX_DEPTH} folders; shorten it"
        )
    return path


def is_dot_git(name: str) -> bool:
    """`.git` as git itself refuses it on checkout (any case, trailing dots or spaces, the
    8.3 short name)."""
    folded = name.rstrip(". ").lower()
    return folded == ".git" or folded == "git~1"


def check_mode(path: str, mode: int) -> None:
    if mode == MODE_SUBMODULE:
        raise InvalidInput(f"{path!r} is a git submodule; vendor its files instead")
    if mode not in (MODE_TREE, gitstore.MODE_LINK, *FILE_MODES):
        raise InvalidInput(f"{path!r} has the unsupported file mode {mode:o}")


def check_top_level(path: str, mode: int) -> None:
    """A commit holds the folders `code/` and `config/` and the files `manifest.yaml` and
    `requirements.json`, nothing else (and never a link in their place)."""
    if path not in gitstore.TOP_LEVEL:
        raise InvalidInput(
            f"unexpected path {path!r}: a commit holds only code/, config/,"
            " manifest.yaml and requirements.json"
        )
    if path in FOLDERS and mode != MODE_TREE:
        raise InvalidInput(f"{path!r} must be a folder, not a file or a symlink")
    if path in FILES and mode not in FILE_MODES:
        raise InvalidInput(f"{path!r} must be a regular file, not a folder or a symlink")


def check_link(path: str, target: str | bytes) -> None:
    """A symlink must stay inside its top-level folder, however it is followed.

    Read as text, `a/here/../../x` may stay inside while on disk each `..` climbs from
    wherever a link (`here -> .`) put it. So a target is `../` a few times (no higher than
    the link's own top-level folder), then folder names only: every `..` is taken from a real
    folder, and every link followed on the way obeys the same rule.
    """
    text = _link_text(path, target)
    top, _, below = path.partition("/")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), text))
    if not below or text.startswith("/") or not resolved.startswith(top + "/"):
        raise InvalidInput(f"symlink {path!r} points outside the workspace ({text})")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    ups = len(parts) - len(list(_drop_leading_ups(parts)))
    if ".." in parts[ups:]:
        plain = posixpath.relpath(resolved, posixpath.dirname(path))
        raise InvalidInput(
            f"symlink {path!r} -> {text!r} climbs out of a folder it entered, which another"
            f" link can redirect outside the workspace; write it as {plain!r}"
        )


def _link_text(path: str, target: str | bytes) -> str:
    if isinstance(target, bytes):
        if len(target) > MAX_LINK_BYTES:
            raise InvalidInput(f"symlink {path!r} has a target over {MAX_LINK_BYTES} bytes")
        try:
            target = target.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"symlink {path!r} has a target that is not UTF-8") from None
    if "\0" in target or not target:
        raise InvalidInput(f"symlink {path!r} has an empty or invalid target")
    return target


def _drop_leading_ups(parts: list[str]) -> Iterable[str]:
    it = iter(parts)
    for part in it:
        if part != "..":
            yield part
            yield from it
            return


def is_config_toml(path: str) -> bool:
    return path.startswith(gitstore.CONFIG + "/") and path.endswith(".toml")


def check_toml(shown: str, data: bytes) -> dict[str, Any]:
    """A configuration file must be UTF-8 TOML: `shown` is the name in the error (the
    workspace's `.dlt/…` for the CLI, the commit's `config/…` for the hook)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(
            f"{shown} is not UTF-8 (line {line}); save it as UTF-8, which TOML requires"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib quotes the offending character, which may sit inside a secret: drop it
        message = re.sub(r"character .+? \(at ", "character (at ", str(exc))
        raise InvalidInput(f"{shown}: invalid TOML: {message}") from None
    except RecursionError:
        raise InvalidInput(f"{shown}: invalid TOML: nested too deeply") from None


def check_secrets(shown: str, data: bytes, known_kids: Iterable[str]) -> None:
    """Every value of a `*.secrets.toml` is sealed for one of `known_kids`."""
    check_toml(shown, data)
    crypto.check_sealed(data.decode("utf-8"), shown, list(known_kids))


def check_entry_points(manifest: dict[str, Any], exists: Callable[[str], bool]) -> None:
    """Each job's entry module is a file of the commit (`code/a/b.py` or
    `code/a/b/__init__.py` for module `a.b`), except dlt's own jobs, whose module comes
    with dlt in the job's environment."""
    for job in manifest.get("jobs") or []:
        module = str((job.get("entry_point") or {}).get("module") or "")
        if module.startswith(ENVIRONMENT_MODULES):
            continue
        base = f"{gitstore.CODE}/" + module.replace(".", "/")
        candidates = (f"{base}.py", f"{base}/__init__.py")
        if not module or not any(exists(c) for c in candidates):
            raise InvalidInput(
                f"job {job.get('job_ref')!r}: its entry point module {module!r} is not in the"
                f" commit ({candidates[0]}); is the file excluded by .gitignore?"
            )
