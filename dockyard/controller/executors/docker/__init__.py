"""Docker executor: every run in its own container, images built from the requirements.

Split by concern, each module saying why it is as it is:

- `executor.py`   `DockerExecutor`, the executor port over the parts below
- `images.py`     an image per requirement set, built without a registry; collection
- `containers.py` a run's container: create, adopt after a restart, signal, its end, removal
- `logs.py`       a container's output streamed into the run log (resumed after a break)
- `events.py`     Docker's event stream (wakes the runner) and the engine's outages
- `engine.py`     the connection to the engine, its errors, its timestamps
- `config.py`     `DockerConfig` and what the parts share

The run directory is the local executor's (`dockyard/shim/rundir.py`): a container's end is
recorded in `exit.json` like a supervisor's, so the runner asks both executors the same way.
"""

from dockyard.controller.executors.docker.config import DockerConfig
from dockyard.controller.executors.docker.executor import DockerExecutor

__all__ = ["DockerConfig", "DockerExecutor"]
