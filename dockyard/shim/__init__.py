"""Stand-alone scripts that run outside the controller's process.

`dlt_shim.py` runs inside a workspace's own Python environment (where dockyard is not
installed); `supervisor.py` runs one job process and records its output and exit. Both are
started by file path and import only the standard library (and, for the shim, dlt);
`rundir.py` (the run directory's files) and `loglines.py` (output into log lines) are shared
by the supervisor and the controller's executors.
`loopback/` is put first on `PYTHONPATH` of apps (interactive runs): its `sitecustomize`
keeps every Python process of the run listening on loopback only.
"""

from pathlib import Path

SHIM = Path(__file__).with_name("dlt_shim.py")
SUPERVISOR = Path(__file__).with_name("supervisor.py")
LOOPBACK = Path(__file__).with_name("loopback")
