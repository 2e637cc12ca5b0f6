"""What a deploy commits: `manifest.yaml`, `requirements.json`, `code/…` and `config/…` from
an inspection's staged files, the receive hook's file rules checked on them before they are
committed, and the commit message.

Shared by `dockyard deploy` (which pushes the commit) and the server's deploy from a git
host (`controller/gitsource.py`, which writes its own repository), so a commit made either way
has the same layout, canonical manifest and message.
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dockyard import crypto
from dockyard.controller import gitstore, manifests, planning, pushrules
from dockyard.controller.gitstore import FileEntry
from dockyard.controller.inspection import Inspection


def deploy_files(
    stage: Path,
    files: list[dict[str, Any]],
    config: list[dict[str, Any]],
    manifest: dict[str, Any],
    requirements: dict[str, Any],
) -> dict[str, FileEntry]:
    """The commit's content: manifest, requirements, code/… and config/…"""
    out = {
        gitstore.MANIFEST: FileEntry(gitstore.MODE_FILE, manifests.dump_yaml(manifest).encode()),
        gitstore.REQUIREMENTS: FileEntry(
            gitstore.MODE_FILE, (json.dumps(requirements, indent=2, sort_keys=True) + "\n").encode()
        ),
    }
    for prefix, entries in ((gitstore.CODE, files), (gitstore.CONFIG, config)):
        for entry in entries:
            rel = entry["path"]
            if prefix == gitstore.CONFIG:
                rel = rel.removeprefix(".dlt/")
            out[f"{prefix}/{rel}"] = _entry(stage / entry["path"], entry)
    return out


def planned(
    seen: Inspection, old: dict[str, Any] | None, manifest: dict[str, Any]
) -> tuple[planning.Plan, dict[str, Any], dict[str, FileEntry]]:
    """The plan from the deployed manifest `old` to `manifest`, and the commit's files. An
    unchanged manifest keeps the deployed blob byte for byte, so a laptop deploy and a
    server-side one of the same workspace commit the same tree."""
    plan = planning.plan(old, manifest)
    if old is not None and manifests.canonical(old) == manifest:
        manifest = old
    files = deploy_files(seen.stage, seen.files, seen.config, manifest, seen.requirements)
    return plan, manifest, files


def _entry(source: Path, meta: dict[str, Any]) -> FileEntry:
    if meta.get("link") is not None:
        return FileEntry(gitstore.MODE_LINK, str(meta["link"]).encode())
    mode = gitstore.MODE_EXEC if meta.get("exec") else gitstore.MODE_FILE
    return FileEntry(mode, source.read_bytes())


def check_commit(files: dict[str, FileEntry], manifest: dict[str, Any]) -> None:
    """What the server's receive hook checks in every commit, checked before committing, with
    the workspace's own file names: configuration TOML, links, paths, entry points."""
    for path, entry in sorted(files.items()):
        parent = ""
        for part in path.split("/"):
            parent = pushrules.entry_path(parent, part.encode()) + "/"
        if entry.mode == gitstore.MODE_LINK:
            pushrules.check_link(path, entry.data)
        elif pushrules.is_config_toml(path):
            pushrules.check_toml(workspace_name(path), entry.data)
    pushrules.check_entry_points(
        manifest, lambda p: p in files and files[p].mode in pushrules.FILE_MODES
    )


def workspace_name(path: str) -> str:
    """A commit path as the workspace names it: `config/x.toml` is `.dlt/x.toml`."""
    if path.startswith(gitstore.CONFIG + "/"):
        return ".dlt/" + path.removeprefix(gitstore.CONFIG + "/")
    return path.removeprefix(gitstore.CODE + "/")


def commit_message(plan: planning.Plan, script: str | None = None) -> str:
    """`deploy: 2 added, 1 updated` (`deploy x.py (ad hoc): …` for one script), then one line
    per changed job."""
    subject = f"deploy: {plan.summary()}"
    if script is not None:
        subject = f"deploy {script} (ad hoc): {plan.summary()}"
    body = [
        f"{kind}: {ref}" for kind in ("added", "updated", "archived") for ref in plan.refs(kind)
    ]
    return subject + ("\n\n" + "\n".join(body) if body else "") + "\n"


def resealed(
    files: Mapping[str, FileEntry],
    identities: Mapping[str, str],
    public_key: str,
    fp_key: bytes,
    keep_kid: str | None = None,
) -> tuple[dict[str, FileEntry], list[str]]:
    """`files` with every `config/*.secrets.toml` decrypted (any of `identities`) and encrypted
    again for `public_key`, and the paths that changed. A file already sealed for `keep_kid`
    alone is left as it is (key rotation passes None: everything is re-encrypted)."""
    out = dict(files)
    recovery = crypto.recovery_recipient(_data(files.get(f"{gitstore.CONFIG}/config.toml")))
    changed: list[str] = []
    for path in sorted(files):
        if not path.startswith(f"{gitstore.CONFIG}/") or not crypto.is_secret_file(path):
            continue
        text = files[path].data.decode()
        if keep_kid is not None and sealed_for(text, path, keep_kid):
            continue
        text = crypto.reencrypt_toml(
            text, path, identities, public_key=public_key, recovery=recovery, fp_key=fp_key
        )
        out[path] = FileEntry(files[path].mode, text.encode())
        changed.append(path)
    return out, changed


def sealed_for(text: str, path: str, kid: str) -> bool:
    """Every value of the secrets file `text` is sealed for key `kid`."""
    try:
        crypto.check_sealed(text, path, [kid])
    except crypto.SecretError:
        return False
    return True


def _data(entry: FileEntry | None) -> bytes | None:
    return entry.data if entry is not None else None
