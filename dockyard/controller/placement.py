"""Placement: which pool and labels a job's runs need, from dlt's `require` fields and a
server setting (`DOCKYARD_PLACEMENT`, a TOML file; docs/scaling.md).

dlt lets a job say what it needs — `require.instance` (a dict; `require.machine` becomes
`instance.size`), `require.region`, `require.provider` — but not where that is: that is the
server's knowledge. The file maps each value to a pool and/or labels:

    [instance.size]
    large = { pool = "big" }
    [region]
    eu-west-1 = { labels = { region = "eu" } }

A run may go to a node whose pool is the run's pool and whose labels include the run's labels
(`may_take`). Pure: reading the file is the only effect, at server start.
"""

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidInput

DEFAULT_POOL = "default"
SECTIONS = ("instance", "region", "provider")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class PlacementError(InvalidInput):
    """A bad placement file, or a job whose requirements map to two pools."""


@dataclass(frozen=True, slots=True)
class Target:
    pool: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Placement:
    pool: str = DEFAULT_POOL
    labels: dict[str, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)  # requirements no rule maps

    @property
    def embedded(self) -> bool:
        """Whether a controller's own runner may take it (the default pool, no labels)."""
        return self.pool == DEFAULT_POOL and not self.labels


def may_take(
    node_pool: str | None, node_labels: Mapping[str, Any], pool: str, labels: Mapping[str, Any]
) -> bool:
    """A node takes a run iff its pool is the run's and its labels include the run's."""
    return node_pool == pool and all(str(node_labels.get(k)) == str(v) for k, v in labels.items())


def requirements(definition: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The job's placement requirements as (key, value): `instance.size`, `region`, …"""
    require = definition.get("require") or {}
    found = [
        (f"instance.{key}", str(value))
        for key, value in sorted((require.get("instance") or {}).items())
        if value is not None
    ]
    for key in ("region", "provider"):
        if require.get(key):
            found.append((key, str(require[key])))
    return found


def describe(pool: str, labels: Mapping[str, Any]) -> str:
    """`pool 'big' with labels region=eu` (as reasons and listings say it)."""
    text = f"pool {pool!r}"
    if labels:
        text += " with labels " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return text


class Rules:
    def __init__(self, rules: Mapping[tuple[str, str], Target] | None = None, source: str = ""):
        self.rules = dict(rules or {})
        self.source = source

    @classmethod
    def load(cls, path: Path) -> "Rules":
        """The rules of a placement file; PlacementError (one line: the file, the key, the
        fix) when it cannot be read or has a wrong shape."""
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise PlacementError(
                f"placement file {path}: cannot read it ({exc.strerror}); fix DOCKYARD_PLACEMENT"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise PlacementError(f"placement file {path}: not valid TOML ({exc})") from exc
        return cls(dict(_parse(path, data)), str(path))

    def place(self, definition: Mapping[str, Any]) -> Placement:
        """Where a job's runs go. Several rules: their labels are united, at most one pool
        (two → PlacementError naming both). No rule, no requirement: the default pool."""
        pool: tuple[str, str] | None = None
        labels: dict[str, str] = {}
        unmapped = []
        for key, value in requirements(definition):
            target = self.rules.get((key, value))
            if target is None:
                unmapped.append(f"{key}={value}")
                continue
            if target.pool is not None:
                if pool is not None and pool[0] != target.pool:
                    raise PlacementError(
                        f"its requirements map to two pools: {pool[0]!r} ({pool[1]}) and"
                        f" {target.pool!r} ({key}={value}); change the job's require or the"
                        " placement file"
                    )
                pool = (target.pool, f"{key}={value}")
            labels.update(target.labels)
        return Placement(pool[0] if pool else DEFAULT_POOL, labels, unmapped)


def _parse(path: Path, data: Mapping[str, Any]) -> Iterable[tuple[tuple[str, str], Target]]:
    for section, table in data.items():
        if section not in SECTIONS:
            raise _bad(path, section, "use only [instance.KEY], [region] and [provider] tables")
        if section == "instance":
            _check_table(path, section, table)
            for key, values in table.items():
                name = f"instance.{key}"
                _check_table(path, name, values)
                for value, target in values.items():
                    yield (name, value), _target(path, name, value, target)
        else:
            _check_table(path, section, table)
            for value, target in table.items():
                yield (section, value), _target(path, section, value, target)


def _target(path: Path, section: str, value: str, raw: Any) -> Target:
    where = f"{section}.{value}"
    if not isinstance(raw, dict) or not raw or set(raw) - {"pool", "labels"}:
        raise _bad(path, where, 'write { pool = "NAME" } and/or { labels = { k = "v" } }')
    pool = raw.get("pool")
    if pool is not None and (not isinstance(pool, str) or not NAME.fullmatch(pool)):
        raise _bad(path, f"{where}.pool", "a pool name is letters, digits, '.', '_' or '-'")
    labels = raw.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise _bad(path, f"{where}.labels", 'write labels = { key = "value" } (strings)')
    return Target(pool, dict(labels))


def _check_table(path: Path, where: str, table: Any) -> None:
    if not isinstance(table, dict):
        raise _bad(path, where, f"make [{where}] a table of value = {{ pool/labels }}")


def _bad(path: Path, key: str, fix: str) -> PlacementError:
    return PlacementError(f"placement file {path}: key {key!r} is not valid: {fix}")
