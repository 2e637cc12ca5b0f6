"""Canonical manifest form: what `manifest.yaml` holds and how it is validated.

The manifest dlt's worker prints carries volatile fields (`created_at`, version bookkeeping)
and typed datetimes. dockyard stores a canonical form instead: datetimes as ISO strings,
volatile fields dropped, keys sorted, so identical content always gives an identical git blob
and a redeploy of unchanged code is not a change.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from dockyard.errors import InvalidInput

Manifest = dict[str, Any]
VOLATILE_FIELDS = ("created_at", "version", "version_hash", "previous_hashes")
SCHEMA_NAME = "manifest.schema.json"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_EPOCH = "1970-01-01T00:00:00+00:00"
# bounds of a stored manifest: the 5,000-job workspaces of bench/ are about 3 MB and 300,000
# values; aliases (which make a small file huge) are refused outright
MAX_MANIFEST_BYTES = 8 * 1024 * 1024
MAX_YAML_NODES = 1_000_000
MAX_YAML_DEPTH = 64
MAX_JOBS = 10_000


def to_jsonable(value: Any) -> Any:
    """Datetimes to ISO strings, tuples to lists, recursively."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def canonical(manifest: Manifest) -> Manifest:
    """The stored form: JSON types only, without volatile fields."""
    clean = to_jsonable(manifest)
    for key in VOLATILE_FIELDS:
        clean.pop(key, None)
    return dict(clean)


def dump_yaml(manifest: Manifest) -> str:
    return yaml.dump(
        canonical(manifest),
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )


def load_yaml(text: str | bytes) -> Manifest:
    """A manifest from YAML, within bounds (`check_yaml`, `MAX_JOBS`): what a push, an old
    commit or a hand-edited file holds is read the same way, and fails with one line."""
    data = text.encode() if isinstance(text, str) else text
    check_yaml(data)
    try:
        loaded = yaml.load(data, Loader=_Loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of 5,000 digits
        raise InvalidInput(f"manifest.yaml holds a value that cannot be read: {exc}") from None
    if not isinstance(loaded, dict):
        raise InvalidInput("manifest.yaml must hold a mapping with `engine_version` and `jobs`")
    check_shape(loaded)
    # a hand-edited file may hold unquoted timestamps, which YAML turns into datetimes
    return dict(to_jsonable(loaded))


@dataclass(frozen=True, slots=True)
class Checked:
    """A manifest parsed (`load_yaml`) from exactly the bytes of git blob `blob` and
    validated (`validate`): what one deploy hands its later steps (the receive hook's checks,
    the reconciler) so the same bytes are parsed and validated once. A reader uses it only
    when the blob it would read has this id; any other blob is read and checked in full."""

    blob: str  # the git object id (hex) of the bytes
    manifest: Manifest

    def holds(self, blob: object) -> bool:
        return str(blob) == self.blob


def checked(data: bytes, schema_valid: Manifest | None = None) -> Checked:
    """Parse and validate `data` as the receive hook does: the result stands for that blob.
    `schema_valid`, a manifest that just passed `validate_schema`, spares running the JSON
    Schema and semantic checks again when `data` parses to exactly it (same JSON text)."""
    manifest = load_yaml(data)
    validate(manifest, schema_checked=schema_valid is not None and _same(manifest, schema_valid))
    return Checked(blob_id(data), manifest)


def _same(a: Manifest, b: Manifest) -> bool:
    """Equal as JSON values (`==` alone takes True for 1 and 1.0 for 1)."""
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except (TypeError, ValueError):
        return False


def blob_id(data: bytes) -> str:
    """git's object id of a blob holding `data` (SHA-1 object format; a repository in another
    format never matches it, so its readers check in full)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


def check_yaml(data: bytes) -> None:
    """Refuse YAML that costs more to load than its size: anchors and aliases (600 bytes of
    nested aliases expand to gigabytes, the "billion laughs"), more than `MAX_YAML_NODES`
    nodes, nesting deeper than `MAX_YAML_DEPTH`, more than `MAX_MANIFEST_BYTES` bytes. The
    events are scanned (libyaml, linear) before anything is built."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidInput(
            f"manifest.yaml is {len(data)} bytes, over the limit of {MAX_MANIFEST_BYTES};"
            " split the workspace"
        )
    nodes = depth = 0
    try:
        for event in yaml.parse(data, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise InvalidInput(
                    f"manifest.yaml uses a YAML anchor or alias{_line(event)}; manifests"
                    " never need them (dockyard deploy writes none): write the values out"
                )
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if nodes > MAX_YAML_NODES or depth > MAX_YAML_DEPTH:
                raise InvalidInput(
                    f"manifest.yaml has more than {MAX_YAML_NODES} values or is nested deeper"
                    f" than {MAX_YAML_DEPTH} levels{_line(event)}"
                )
    except yaml.YAMLError as exc:
        raise _yaml_error(exc) from None


def check_shape(manifest: Manifest) -> None:
    """What every reader relies on: `jobs` is a list of at most `MAX_JOBS` mappings, each
    with a string `job_ref` (the full validation is `validate`, for what is deployed)."""
    jobs = manifest.get("jobs", [])
    if not isinstance(jobs, list) or not all(
        isinstance(j, dict) and isinstance(j.get("job_ref"), str) for j in jobs
    ):
        raise InvalidInput("manifest.yaml: `jobs` must be a list of jobs, each with a job_ref")
    if len(jobs) > MAX_JOBS:
        raise InvalidInput(
            f"manifest.yaml has {len(jobs)} jobs, over the limit of {MAX_JOBS}; split the workspace"
        )


def _line(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f" at line {mark.line + 1}" if mark is not None else ""


def _yaml_error(exc: yaml.YAMLError) -> InvalidInput:
    where = getattr(exc, "problem_mark", None)
    at = f" at line {where.line + 1}" if where is not None else ""
    problem = getattr(exc, "problem", None) or "parse error"
    return InvalidInput(f"manifest.yaml is not valid YAML: {problem}{at}")


def job_fingerprint(job_def: dict[str, Any]) -> str:
    """Stable hash of one job definition; equal hashes mean nothing to apply."""
    text = json.dumps(to_jsonable(job_def), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def schema_dir() -> Path:
    """`schemas/` inside the installed wheel, or at the repo root in a source checkout."""
    packaged = resources.files("dockyard") / "schemas"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "schemas"


@cache
def load_schema(name: str = SCHEMA_NAME) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((schema_dir() / name).read_text())
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema())


def schema_errors(manifest: Manifest) -> list[str]:
    validator = _validator()
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    return [f"{_json_path(e.absolute_path)}: {e.message}" for e in errors]


def semantic_errors(manifest: Manifest) -> list[str]:
    """What dlt's validator lets through but a runtime cannot run: a timezone that is not an
    IANA name, and follow-up triggers that form a cycle (runs that would start each other
    forever)."""
    errors = []
    for job in manifest.get("jobs", []):
        tz = (job.get("require") or {}).get("timezone")
        if tz is not None and not _is_iana(tz):
            errors.append(
                f"job {job.get('job_ref')!r}: timezone {tz!r} is not an IANA name"
                " (e.g. 'Europe/Berlin', 'UTC')"
            )
    cycle = _follow_up_cycle(manifest)
    if cycle:
        errors.append(
            "follow-up triggers form a cycle: "
            + " -> ".join(cycle)
            + "; break it, or gate the job with freshness instead"
        )
    return errors


def _is_iana(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _follow_up_cycle(manifest: Manifest) -> list[str] | None:
    """A cycle in the graph upstream -> downstream of `job.success:`/`job.fail:` triggers."""
    downstream: dict[str, list[str]] = {}
    for job in manifest.get("jobs", []):
        for trigger in job.get("triggers") or []:
            kind, _, upstream = str(trigger).partition(":")
            if kind in ("job.success", "job.fail"):
                downstream.setdefault(upstream, []).append(job["job_ref"])
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(ref: str, path: list[str]) -> list[str] | None:
        state[ref] = 1
        for nxt in downstream.get(ref, []):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [*path, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[ref] = 2
        return None

    for ref in sorted(downstream):
        if ref not in state and (found := visit(ref, [ref])):
            return found
    return None


def validate_schema(manifest: Manifest) -> None:
    """dockyard's own checks (dlt's validator runs inside the worker): the JSON Schema, then
    what a runtime additionally needs (`semantic_errors`)."""
    errors = schema_errors(manifest)
    if errors:
        raise InvalidInput(
            "manifest does not match schemas/manifest.schema.json: " + "; ".join(errors)
        )
    errors = semantic_errors(manifest)
    if errors:
        raise InvalidInput("invalid manifest: " + "; ".join(errors))


def _json_path(path: Any) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in path]
    return "manifest" + "".join(parts)


def validate(manifest: Manifest, schema_checked: bool = False) -> list[str]:
    """Validate with dlt's validator and the JSON Schema; return dlt's warnings.
    `schema_checked`: this very value passed `validate_schema` already (dlt's validator
    still runs).

    Raises `InvalidInput` with every problem on one line.
    """
    from dockyard.controller import dltadapter

    # `created_at` is required by dlt's typing but volatile, so the stored form omits it
    errors, warnings = dltadapter.validate_manifest({"created_at": _EPOCH, **manifest})
    if not errors and not schema_checked:
        errors = schema_errors(manifest) or semantic_errors(manifest)
    if errors:
        raise InvalidInput("invalid manifest: " + "; ".join(errors))
    return warnings
