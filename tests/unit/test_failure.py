"""`failure.explain`: a failed run's reason from the end of its stderr, on tracebacks Python
and dlt really printed (small scripts run once per module, the dlt ones through the shim
the executors start jobs with)."""

import subprocess
import sys
import textwrap

import pytest

from dockyard.controller import failure
from dockyard.shim import SHIM

SCRIPTS = {
    "pkg/__init__.py": "",
    "pkg/mod.py": "import json\n\nimport ibis_not_installed  # noqa\n",
    "pkg/bad.py": "def broken(:\n    pass\n",
    "submodule_import.py": "def main():\n    from pkg import mod  # noqa\n\n\nmain()\n",
    "syntax.py": "from pkg import bad  # noqa\n",
    "toplevel.py": "import json\nimport not_installed_at_all  # noqa\n",
    "chained.py": textwrap.dedent(
        """
        def lookup():
            try:
                {}["key"]
            except KeyError:
                raise RuntimeError("lookup failed\\nwith a second line")


        lookup()
        """
    ),
    "wrapped.py": textwrap.dedent(
        """
        class ConfigError(Exception):
            pass


        try:
            int("x")
        except ValueError as exc:
            raise ConfigError("setting 'port' is not a number") from exc
        """
    ),
    "long_message.py": "raise ValueError('x' * 5000)\n",
    "exits.py": "import sys\n\nsys.exit('config value missing: api_key')\n",
    "pipe.py": textwrap.dedent(
        """
        import dlt


        @dlt.resource
        def items():
            yield {"a": 1}
            raise ValueError("bad row 7")


        def load():
            pipeline = dlt.pipeline("tb_test", destination="dummy", dataset_name="d")
            pipeline.extract(items())


        load()
        """
    ),
}
PLAIN = ["submodule_import", "syntax", "toplevel", "chained", "wrapped", "long_message"]
THROUGH_SHIM = ["pipe", "exits"]  # dlt imported: run side by side, once


@pytest.fixture(scope="module")
def stderr(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    ws = tmp_path_factory.mktemp("ws")
    for name, text in SCRIPTS.items():
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(text)
    env = {"PATH": "/usr/bin:/bin", "DLT_DATA_DIR": str(ws / "dlt"), "HOME": str(ws)}
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(SHIM), "launch", name],
            cwd=ws,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in THROUGH_SHIM
    }
    found = {}
    for name in PLAIN:
        done = subprocess.run(
            [sys.executable, f"{name}.py"], cwd=ws, env=env, capture_output=True, text=True
        )
        assert done.returncode == 1, done.stderr
        found[name] = done.stderr.splitlines()
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        found[name] = err.splitlines()
    found["root"] = [str(ws)]
    return found


def explain(stderr: dict[str, list[str]], name: str) -> failure.Failure:
    explained = failure.explain(stderr[name], stderr["root"])
    assert explained is not None, "\n".join(stderr[name])
    return explained


def test_an_import_error_in_a_submodule_names_the_module_and_the_workspace_line(
    stderr: dict[str, list[str]],
) -> None:
    found = explain(stderr, "submodule_import")
    assert (
        found.reason == "ModuleNotFoundError: No module named 'ibis_not_installed' (pkg/mod.py:3)"
    )
    assert found.traceback is not None
    assert found.traceback.splitlines()[-1] == found.reason.split(" (")[0]
    tail = found.traceback.splitlines()
    assert '  File "pkg/mod.py", line 3, in <module>' in tail  # relative, like the reason
    assert any(set(line.strip()) <= {"^", "~"} for line in stderr["submodule_import"])
    assert not any(set(line.strip()) <= {"^", "~"} for line in tail)  # markers left out


def test_a_module_level_import_error(stderr: dict[str, list[str]]) -> None:
    found = explain(stderr, "toplevel")
    assert (
        found.reason
        == "ModuleNotFoundError: No module named 'not_installed_at_all' (toplevel.py:2)"
    )


def test_a_syntax_error_points_at_the_broken_file(stderr: dict[str, list[str]]) -> None:
    found = explain(stderr, "syntax")
    assert found.reason.startswith("SyntaxError: ")
    assert found.reason.endswith("(pkg/bad.py:1)")
    assert found.traceback is not None and "def broken(:" in found.traceback
    assert any(line.strip() == "^" for line in found.traceback.splitlines())  # kept here


def test_the_last_of_chained_exceptions_ended_the_run_and_its_first_line_is_the_message(
    stderr: dict[str, list[str]],
) -> None:
    assert any("During handling" in line for line in stderr["chained"])
    found = explain(stderr, "chained")
    assert found.reason == "RuntimeError: lookup failed (chained.py:6)"
    assert found.traceback is not None and "KeyError" not in found.traceback


def test_an_exception_the_user_raised_from_another_is_the_users_own(
    stderr: dict[str, list[str]],
) -> None:
    found = explain(stderr, "wrapped")
    assert found.reason == "ConfigError: setting 'port' is not a number (wrapped.py:9)"


def test_a_dlt_step_failure_gives_the_exception_dlt_wrapped(stderr: dict[str, list[str]]) -> None:
    assert any("PipelineStepFailed" in line for line in stderr["pipe"])
    found = explain(stderr, "pipe")
    assert found.reason == "ValueError: bad row 7 (pipe.py:8), in dlt's extract step"
    assert found.traceback is not None and found.traceback.endswith("ValueError: bad row 7")


def test_sys_exit_with_a_message_through_the_shim(stderr: dict[str, list[str]]) -> None:
    assert stderr["exits"][-1] == "SystemExit: config value missing: api_key"
    found = explain(stderr, "exits")
    assert found.reason == "SystemExit: config value missing: api_key"
    assert found.traceback is None


def test_a_long_message_is_cut_to_one_bounded_line(stderr: dict[str, list[str]]) -> None:
    found = explain(stderr, "long_message")
    assert len(found.reason) <= failure.REASON_MAX
    assert found.reason.startswith("ValueError: xxx") and found.reason.endswith(
        "… (long_message.py:1)"
    )
    assert found.traceback is not None and len(found.traceback.encode()) <= failure.TAIL_BYTES


def test_without_the_workspace_root_no_location_is_made_up(stderr: dict[str, list[str]]) -> None:
    found = failure.explain(stderr["toplevel"], ["/somewhere/else"])
    assert found is not None
    assert found.reason == "ModuleNotFoundError: No module named 'not_installed_at_all'"


def test_no_traceback_means_no_explanation() -> None:
    assert failure.explain(["some warning", "Killed"], ["/ws"]) is None
    assert failure.explain([], ["/ws"]) is None


def test_a_traceback_far_before_the_end_is_not_the_one_that_ended_the_run(
    stderr: dict[str, list[str]],
) -> None:
    later = [f"retrying {i}" for i in range(failure.RECENT + 1)]
    assert failure.explain(stderr["chained"] + later, stderr["root"]) is None


def test_hostile_output_is_bounded() -> None:
    huge_frames = ["Traceback (most recent call last):"]
    huge_frames += [f'  File "/ws/m{i}.py", line {i}, in f\n    x()' for i in range(5000)]
    lines = [*"\n".join(huge_frames).splitlines(), "E: " + "y" * 100000]
    found = failure.explain(lines, ["/ws"])
    assert found is not None
    assert found.reason.startswith("E: yyy") and found.reason.endswith("(m4999.py:4999)")
    assert len(found.reason) <= failure.REASON_MAX
    assert found.traceback is not None
    assert len(found.traceback.splitlines()) <= failure.TAIL_LINES
    assert len(found.traceback.encode()) <= failure.TAIL_BYTES


def test_a_garbled_traceback_is_no_explanation() -> None:
    lines = ["Traceback (most recent call last):", '  File "/ws/a.py", line 1', "not a type: x y"]
    assert failure.explain(lines, ["/ws"]) is None
