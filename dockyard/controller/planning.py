"""The deploy plan: a pure diff of two manifests, by job ref.

The CLI's `deploy --dry-run` and the controller's reconciler call the same `plan`, so what a
user is shown is what gets applied. No I/O, no clock, no dlt import.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dockyard.controller.manifests import job_fingerprint

Manifest = dict[str, Any]
ChangeKind = Literal["added", "updated", "unchanged", "archived"]


@dataclass(frozen=True, slots=True)
class JobChange:
    job_ref: str
    kind: ChangeKind
    new: dict[str, Any] | None
    changed_fields: tuple[str, ...] = ()
    old: dict[str, Any] | None = None  # an updated job's definition before, when known


@dataclass(frozen=True, slots=True)
class Plan:
    changes: tuple[JobChange, ...] = field(default_factory=tuple)

    def refs(self, kind: ChangeKind) -> list[str]:
        return [c.job_ref for c in self.changes if c.kind == kind]

    @property
    def is_noop(self) -> bool:
        return all(c.kind == "unchanged" for c in self.changes)

    def summary(self) -> str:
        """`2 added, 1 updated, 1 archived` (unchanged jobs are not news)."""
        parts = [
            f"{len(self.refs(kind))} {kind}"
            for kind in ("added", "updated", "archived")
            if self.refs(kind)
        ]
        return ", ".join(parts) or "no job changes"

    def as_dict(self) -> dict[str, list[str]]:
        return {kind: self.refs(kind) for kind in ("added", "updated", "unchanged", "archived")}


def jobs_by_ref(manifest: Manifest | None) -> dict[str, dict[str, Any]]:
    if not manifest:
        return {}
    return {job["job_ref"]: job for job in manifest.get("jobs", [])}


def plan(old: Manifest | None, new: Manifest) -> Plan:
    """Classify every job of `old` and `new`; jobs missing from `new` are archived."""
    old_jobs = jobs_by_ref(old)
    fingerprints = {ref: job_fingerprint(job) for ref, job in old_jobs.items()}
    return plan_from_fingerprints(fingerprints, new, old_jobs)


def plan_from_fingerprints(
    old: Mapping[str, str],
    new: Manifest,
    old_jobs: Mapping[str, dict[str, Any]] | None = None,
) -> Plan:
    """`plan` against the fingerprints of the deployed jobs (what the controller keeps per
    job row), so it need not parse the old manifest again; `old_jobs`, when given, lets
    updated jobs name their changed fields."""
    new_jobs = jobs_by_ref(new)
    changes: list[JobChange] = []
    for ref, job in new_jobs.items():
        before = old.get(ref)
        if before is None:
            changes.append(JobChange(ref, "added", job))
        elif before != job_fingerprint(job):
            previous = old_jobs.get(ref) if old_jobs else None
            fields = _changed_fields(previous, job) if previous is not None else ()
            changes.append(JobChange(ref, "updated", job, fields, previous))
        else:
            changes.append(JobChange(ref, "unchanged", job))
    changes.extend(JobChange(ref, "archived", None) for ref in old if ref not in new_jobs)
    return Plan(tuple(changes))


def merge_ad_hoc(old: Manifest | None, ad_hoc: Manifest) -> Manifest:
    """An ad-hoc deploy adds or updates its own jobs and keeps every other job as it is."""
    merged = dict(old) if old else {k: v for k, v in ad_hoc.items() if k != "jobs"}
    jobs = jobs_by_ref(old)
    jobs.update(jobs_by_ref(ad_hoc))
    merged["jobs"] = list(jobs.values())
    return merged


def _changed_fields(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, ...]:
    keys = sorted(set(before) | set(after))
    return tuple(
        k for k in keys if job_fingerprint({k: before.get(k)}) != job_fingerprint({k: after.get(k)})
    )
