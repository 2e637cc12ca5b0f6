"""A hostile workspace: one job per attack that tests/security runs against a real server.

Each `attack_<area>.py` module holds the jobs of one area (sandbox, logs, beacon, apps …) and
lists them in its `__all__`; this module collects them all, so an area adds a file and never
edits this one. A job states what it tried and what happened on stdout, one line per probe
(`PROBE <name> <outcome>`), and the test reads the run's log: the attack must fail and the
job itself must still run.
"""

import importlib
from pathlib import Path

__all__: list[str] = []
for _path in sorted(Path(__file__).resolve().parent.glob("attack_*.py")):
    _module = importlib.import_module(_path.stem)
    for _name in _module.__all__:
        globals()[_name] = getattr(_module, _name)
        __all__.append(_name)
