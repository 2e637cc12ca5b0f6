"""Encrypted configuration on the server: the key the CLI encrypts with, a run's configuration
opened for that run only, key rotation, and key-name diffs between configuration versions.

Secret values are decrypted at run start (`crypto.open_files`, for the run's own folder) and
to redact what a run reports; everything else (API, CLI, diffs, the receive hook) works on
key names and fingerprints.
"""

import base64
from collections.abc import Mapping
from typing import Any

import pygit2

from dockyard import crypto
from dockyard.controller import audit, deployfiles, gitstore, isolation, usecases
from dockyard.controller.assembly import Controller
from dockyard.errors import Conflict


# the API -------------------------------------------------------------------------------------
def key_info(
    ctl: Controller, principal: usecases.access.Principal, name: str, purpose: str
) -> dict[str, Any]:
    """The workspace's public key; for `purpose="deploy"` (deploy role) also the fingerprint
    key the CLI needs to keep unchanged values' ciphertexts."""
    role = "deploy" if purpose == "deploy" else "read"
    with ctl.db.session() as session:
        ws = usecases.access.workspace(session, principal, name, role)
        if purpose == "deploy":  # what the CLI asks before a deploy (and after a refused push)
            isolation.check_deploy(principal, ctl.isolation, ctl.executor_of(ws), ctl.settings)
        key = ctl.keys.sealing_key(session, ws)
        rows = ctl.keys.all_keys(session, ws)
        info: dict[str, Any] = {
            "workspace": name,
            "public_key": key.public_key,
            "key_id": key.kid,
            "retired_key_ids": [r.kid for r in rows if r.retired_at is not None],
        }
        if purpose == "deploy":
            info["fingerprint_key"] = base64.b64encode(key.fp_key).decode()
    return info


def rotate_key(ctl: Controller, principal: usecases.access.Principal, name: str) -> dict[str, Any]:
    """A new key pair; every secret at HEAD re-encrypted for it in one commit. The database
    changes first: if the commit then loses a race with a push, nothing is unreadable (old
    keys stay) and the next deploy encrypts for the new key."""
    repo = usecases.access.repo(ctl, name)
    with ctl.db.session() as session:
        ws = usecases.access.workspace(session, principal, name, "admin")
        identities = ctl.keys.identities(session, ws)
        old, new = ctl.keys.rotate(session, ws)
        fp_key = ctl.keys.sealing_key(session, ws).fp_key
        head = gitstore.head_sha(repo)
        commit = _reencrypted(repo, head, identities, new.public_key, fp_key, old.kid, new.kid)
        result: dict[str, Any] = {
            "workspace": name,
            "key_id": new.kid,
            "retired_key_id": old.kid,
        }
        actor = audit.token(session, principal.token_id)
        detail = {"key_id": new.kid, "retired_key_id": old.kid}
        audit.record(session, actor, "key.rotate", ctl.clock.now(), ws, new.kid, detail)
    with ctl.db.session() as session:
        ctl.keys.publish(session, usecases.access.workspace(session, principal, name, "admin"))
    result["commit"] = None
    if commit is not None and head is not None:
        _move_branch(repo, commit, head)
        result["commit"] = commit
        ctl.reconciler.reconcile(name)
    return result


def _reencrypted(
    repo: pygit2.Repository,
    head: str | None,
    identities: Mapping[str, str],
    public_key: str,
    fp_key: bytes,
    old_kid: str,
    new_kid: str,
) -> str | None:
    """The commit (not yet on the branch) with HEAD's secrets encrypted for the new key."""
    if head is None:
        return None
    files, changed = deployfiles.resealed(
        dict(gitstore.iter_files(repo, head, "")), identities, public_key, fp_key
    )
    if not changed:
        return None
    tree = gitstore.write_tree(repo, files)
    who = pygit2.Signature("dockyard", "dockyard@localhost")
    message = f"configuration: rotate the workspace key {old_kid} -> {new_kid}\n"
    return str(repo.create_commit(None, who, who, message, tree, [pygit2.Oid(hex=head)]))


def _move_branch(repo: pygit2.Repository, new: str, old: str) -> None:
    """Compare-and-swap the deployed branch (git's own ref locking)."""
    if not gitstore.move_branch(repo, new, old):
        raise Conflict(
            "the workspace was deployed while its key rotated; the new key is in place and"
            " the next deploy encrypts for it (or run rotate-key again)"
        )


# versions -------------------------------------------------------------------------------------
def key_marks(files: Mapping[str, bytes]) -> dict[str, dict[str, str]]:
    """Per file, a marker per key name that changes exactly when the value does (fingerprints
    for secrets, hashes of clear values): what version diffs compare."""
    marks: dict[str, dict[str, str]] = {}
    for name, data in files.items():
        try:
            marks[name] = crypto.key_fingerprints(data.decode("utf-8", "replace"), name)
        except crypto.SecretError:
            marks[name] = {}
    return marks


def diff_versions(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> dict[str, list[str]]:
    """Key names added, removed and changed between two configuration versions, each as
    `<file>: <dotted key>`; a file added or removed counts all its keys."""
    before, after = key_marks(old), key_marks(new)
    out: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
    for name in sorted(before.keys() | after.keys()):
        diff = crypto.diff_keys(before.get(name, {}), after.get(name, {}))
        for kind, names in diff.items():
            out[kind].extend(f"{name}: {key}" for key in names)
    return out


def configuration_info(
    ctl: Controller,
    principal: usecases.access.Principal,
    name: str,
    sha: str | None,
    against: str | None = None,
) -> dict[str, Any]:
    """A configuration version: files, profiles, key names (never values), and which key
    names changed since `against` (default: the previous configuration version)."""
    repo, version = usecases.deployments.version_at(ctl, principal, name, sha, "configuration")
    history = [v.sha for v in gitstore.history(repo, gitstore.CONFIGURATION_PATHS)]
    if against is None and version.sha in history:
        index = history.index(version.sha)
        against = history[index + 1] if index + 1 < len(history) else None
    elif against is not None:
        against = gitstore.version_info(repo, against).sha
    files = gitstore.config_files(repo, version.sha)
    marks = key_marks(files)
    listed = [
        {
            "name": path,
            "profile": _profile_of(path),
            "secret": crypto.is_secret_file(path),
            "keys": sorted(marks[path]),
        }
        for path in sorted(files)
    ]
    return {
        **version.as_dict(),
        "files": listed,
        "profiles": sorted({f["profile"] for f in listed if f["profile"]}),
        "compared_with": against,
        "changes": diff_versions(gitstore.config_files(repo, against) if against else {}, files),
    }


def _profile_of(file_name: str) -> str | None:
    parts = file_name.split(".")
    return parts[0] if len(parts) == 3 else None
