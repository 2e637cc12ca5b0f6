"""`dockyard deploy`'s import check on the laptop: the jobs' environments are built and cached
under `$XDG_CACHE_HOME/dockyard/envs` (keyed like the server's, by requirement set), passing
results under `…/importcheck`; a problem refuses the deploy before anything is pushed, one
`error:` line per problem. The work is `controller/importcheck.py`; the words `importfix`.
"""

import click

from dockyard.cli.config import cache_dir
from dockyard.controller import envs, importcheck, importfix
from dockyard.controller.inspection import Inspection
from dockyard.errors import InvalidInput

SKIPPED = (
    "import check skipped (--skip-import-check): the jobs' modules were not imported in the"
    " environments they run in, so a missing dependency shows only when a job runs"
)


def check(seen: Inspection, python: str, skip: bool) -> list[str]:
    """Warnings to show; raises `InvalidInput` when a job's module does not import."""
    if skip:
        return [SKIPPED]
    builder = envs.EnvBuilder(cache_dir() / "envs")
    outcome = importcheck.check(seen, builder, cache_dir() / "importcheck", _progress)
    warnings = importfix.extra_warnings(outcome.extras, seen.requirements)
    if not outcome.failures:
        return warnings
    missing = [importfix.top_level(f.missing) for f in outcome.failures if f.missing]
    dists = importcheck.distributions(python, missing)
    pyproject = any(f["path"] == "pyproject.toml" for f in seen.files)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    for line in importfix.problems(outcome.failures, seen.requirements, dists, pyproject):
        click.echo(f"error: {line}", err=True)
    count = len(outcome.failures)
    raise InvalidInput(
        f"deploy refused: {count} job module{'s' if count != 1 else ''} did not import in the"
        " environment its jobs run in (above); nothing was pushed. Fix the dependencies, or"
        " deploy anyway with --skip-import-check"
    )


def _progress(line: str) -> None:
    click.echo(line, err=True)
