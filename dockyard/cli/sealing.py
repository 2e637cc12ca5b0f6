"""Secrets leave this machine encrypted: every value of every shipped `*.secrets.toml` is
encrypted for the workspace's public key before it is committed (`dockyard.crypto`).

Unchanged values keep the ciphertext already committed (the fingerprint key the server hands
to deploy tokens tells them apart without decrypting), so a deploy that changes one secret
changes one line. A workspace that does not exist yet is checked against a throwaway key
first: bad TOML or a value encrypted elsewhere fails before the workspace is created.
"""

import base64
from collections.abc import Callable
from dataclasses import dataclass

from dockyard import crypto
from dockyard.cli.client import Client
from dockyard.controller import gitstore
from dockyard.controller.gitstore import FileEntry


@dataclass(frozen=True, slots=True)
class Key:
    public_key: str
    kid: str
    fp_key: bytes
    retired: tuple[str, ...] = ()

    @classmethod
    def throwaway(cls) -> "Key":
        _identity, public = crypto.new_identity()
        return cls(public, crypto.key_id(public), b"\0" * 32)


def workspace_key(client: Client) -> Key:
    data = client.get(f"{client.ws}/key", purpose="deploy")
    return Key(
        data["public_key"],
        data["key_id"],
        base64.b64decode(data["fingerprint_key"]),
        tuple(data.get("retired_key_ids") or ()),
    )


def has_secrets(files: dict[str, FileEntry]) -> bool:
    return any(_is_secret(p) for p in files)


def seal(
    files: dict[str, FileEntry],
    key: Key,
    previous: Callable[[str], bytes | None] = lambda _path: None,
) -> dict[str, FileEntry]:
    """`files` with every secret file's values encrypted for `key`; `previous(path)` is the
    committed file whose unchanged tokens are kept."""
    config_toml = files.get(f"{gitstore.CONFIG}/config.toml")
    recovery = crypto.recovery_recipient(config_toml.data if config_toml else None)
    out = dict(files)
    for path, entry in files.items():
        if not _is_secret(path):
            continue
        old = previous(path)
        text = crypto.encrypt_toml(
            _text(entry.data, path),
            _local_name(path),
            previous=old.decode("utf-8", "replace") if old else None,
            public_key=key.public_key,
            recovery=recovery,
            fp_key=key.fp_key,
            known_kids=key.retired,
        )
        out[path] = FileEntry(entry.mode, text.encode())
    return out


def profile_warnings(files: dict[str, FileEntry], interactive: bool) -> list[str]:
    """What the hosted runtime warns about too: no `prod` profile, and no `access` profile
    when there are interactive jobs (they fall back to `prod`)."""
    names = [p.removeprefix(f"{gitstore.CONFIG}/") for p in files if p.startswith("config/")]
    profiles = {n.split(".")[0] for n in names if n.count(".") == 2}
    warnings = []
    if "prod" not in profiles:
        warnings.append(
            "no prod profile (.dlt/prod.config.toml or .dlt/prod.secrets.toml): batch jobs run"
            " as prod with only the shared config.toml / secrets.toml"
        )
    if interactive and "access" not in profiles:
        warnings.append(
            "no access profile (.dlt/access.config.toml or .dlt/access.secrets.toml):"
            " interactive jobs run with the prod profile"
        )
    return warnings


def _is_secret(path: str) -> bool:
    return path.startswith(f"{gitstore.CONFIG}/") and crypto.is_secret_file(path)


def _local_name(path: str) -> str:
    return ".dlt/" + path.removeprefix(f"{gitstore.CONFIG}/")


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise crypto.SecretError(f"{name} is not UTF-8 text; save it as UTF-8") from None
