"""`dockyard.shim.rundir`: the run directory's records are written whole or not at all, and
read back the same way by the supervisor, both executors and a restarted controller."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.shim import rundir
from dockyard.shim.rundir import ExitStatus


def test_a_record_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / rundir.PROC
    rundir.write_json(target, {"pid": 1})
    rundir.write_json(target, {"pid": 2, "pgid": 2})

    assert json.loads(target.read_text()) == {"pid": 2, "pgid": 2}
    assert os.listdir(tmp_path) == [rundir.PROC]  # no temporary file left beside it
    assert target.stat().st_mode & 0o777 == 0o600


def test_a_failed_write_leaves_the_old_record_and_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / rundir.SPEC
    rundir.write_json(target, {"executor": "local"})

    with pytest.raises(TypeError):
        rundir.write_json(target, {"executor": object()})  # not JSON: fails before writing

    assert json.loads(target.read_text()) == {"executor": "local"}
    assert os.listdir(tmp_path) == [rundir.SPEC]


def test_a_write_cut_short_before_the_rename_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        rundir.write_exit(tmp_path, ExitStatus(0, None), None)

    assert os.listdir(tmp_path) == []  # neither exit.json (the run has not ended) nor a tmp
    assert rundir.read_exit(tmp_path) is None


def test_an_exit_record_reads_back_as_it_was_written(tmp_path: Path) -> None:
    status = ExitStatus(None, 9, "out of memory")
    rundir.write_exit(tmp_path, status, "2026-03-04T10:00:00+00:00")

    assert rundir.read_exit(tmp_path) == status
    assert rundir.ended(tmp_path)
    assert json.loads((tmp_path / rundir.EXIT).read_text())["finished_at"] == (
        "2026-03-04T10:00:00+00:00"
    )


def test_no_exit_record_means_the_run_goes_on(tmp_path: Path) -> None:
    assert rundir.read_exit(tmp_path) is None
    assert not rundir.ended(tmp_path)


def test_an_exit_record_without_error_is_the_supervisors_older_form(tmp_path: Path) -> None:
    (tmp_path / rundir.EXIT).write_text('{"returncode": 3, "signal": null, "finished_at": "x"}')

    assert rundir.read_exit(tmp_path) == ExitStatus(3, None, None)


@pytest.mark.parametrize(
    "garbled",
    ['{"returncode": 0, "sig', "[1, 2]", '{"returncode": "zero"}', '{"signal": true}', "\xff"],
)
def test_a_garbled_exit_record_ends_the_run_with_the_problem_as_reason(
    tmp_path: Path, garbled: str
) -> None:
    (tmp_path / rundir.EXIT).write_text(garbled, encoding="latin-1")

    status = rundir.read_exit(tmp_path)

    assert status is not None
    assert status.returncode is None and status.signal is None
    assert status.error is not None
    assert status.error.startswith(f"the run's exit record {tmp_path / rundir.EXIT} is unreadable")


def test_spec_and_proc_read_as_objects_or_none(tmp_path: Path) -> None:
    assert rundir.read_spec(tmp_path) is None and not rundir.launched(tmp_path)
    assert rundir.executor_of(tmp_path) is None
    (tmp_path / rundir.SPEC).write_text('{"argv": ["true"]}')  # before there were executors
    assert rundir.launched(tmp_path)
    assert rundir.executor_of(tmp_path) == "local"
    rundir.write_json(tmp_path / rundir.SPEC, {"executor": "docker", "container": "c"})
    assert rundir.executor_of(tmp_path) == "docker"
    (tmp_path / rundir.PROC).write_text('{"pid": 4')  # never so, but a reader must not fail
    assert rundir.read_proc(tmp_path) is None


def test_redactions_are_the_runs_secret_values_while_its_configuration_is_there(
    tmp_path: Path,
) -> None:
    assert rundir.read_redactions(tmp_path) == []
    (tmp_path / rundir.SETTINGS).mkdir()
    (tmp_path / rundir.SETTINGS / rundir.REDACT).write_text('["s3cret", 42]')
    assert rundir.read_redactions(tmp_path) == ["s3cret", "42"]


def test_the_supervisor_can_import_it_with_the_standard_library_only() -> None:
    # the supervisor runs as `python -S supervisor.py`: no site-packages, its folder on the path
    shim = Path(rundir.__file__).parent
    code = (
        "import rundir, sys; top = {m.split('.')[0] for m in sys.modules};"
        " print(sorted(top - sys.stdlib_module_names - set(sys.builtin_module_names)))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=shim, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "['__main__', 'rundir']"  # nothing outside the stdlib
