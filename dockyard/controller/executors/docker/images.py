"""Environment images: one per (base image, requirement set), `dockyard-env:<key>`.

Built without a registry: a builder container runs uv (the controller's own binary and cache,
mounted) to create `/env` on the base image, and is committed as the image, labelled with this
server's id. Collection keeps the images used (or built) most recently and removes only images
with this server's label (an engine may serve several servers, and other images may look like
ours). Code is never baked in.
"""

import hashlib
import logging
import shlex
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from docker.errors import DockerException, ImageNotFound
from docker.types import Mount

from dockyard.clock import Clock
from dockyard.controller import envs, server_id
from dockyard.controller.executors.base import LineSink
from dockyard.controller.executors.docker.config import (
    CA_PATH,
    PATH,
    SERVER_LABEL,
    DockerConfig,
    network_environment,
)
from dockyard.controller.executors.docker.engine import ENGINE_ERRORS, Engine, epoch
from dockyard.errors import Unavailable
from dockyard.shim import loglines, rundir

log = logging.getLogger(__name__)
RECIPE = "2"  # bump when the way images are built changes: old images are not reused
USE_FILE = "docker-images.json"  # in the data directory: when a run last started from an image


class Images:
    def __init__(self, config: DockerConfig, engine: Engine, clock: Clock) -> None:
        self.config = config
        self.engine = engine
        self.clock = clock
        self._server_id: str | None = None
        self._build_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @property
    def server_id(self) -> str | None:
        """This server's id (`<data-dir>/server-id`), None without a data directory (then
        no image is ever collected: none can be told apart as ours)."""
        if self._server_id is None and self.config.state_dir is not None:
            self._server_id = server_id.ensure(self.config.state_dir)
        return self._server_id

    def server_label(self) -> dict[str, str]:
        return {SERVER_LABEL: self.server_id} if self.server_id is not None else {}

    def labels(self, env_key: str) -> dict[str, str]:
        """The labels of an environment image this server builds."""
        return {"dockyard.env": env_key, **self.server_label()}

    def tag(self, spec: envs.EnvSpec) -> str:
        """One image per (base image, requirement set)."""
        base = self.base_image(spec)
        key = hashlib.sha256(f"{RECIPE}\n{base}\n{spec.key}".encode()).hexdigest()[:32]
        return f"{self.config.image_repo}:{key}"

    def base_image(self, spec: envs.EnvSpec) -> str:
        """The configured base image; `{python}` stands for the deployment's Python version
        (the default is `python:{python}-slim`)."""
        return self.config.base_image.replace("{python}", spec.python_version or "3.11")

    def ready(self, spec: envs.EnvSpec) -> bool:
        try:
            self.engine.client.images.get(self.tag(spec))
        except ImageNotFound:
            return False
        return True

    def ensure(self, spec: envs.EnvSpec, sink: LineSink) -> None:
        """Build the image unless it exists (once at a time per requirement set), then
        collect the images no longer needed."""
        with self._guard:
            lock = self._build_locks.setdefault(spec.key, threading.Lock())
        with lock:
            if not self.ready(spec):
                self._build(spec, sink)
                self.collect()

    # building -------------------------------------------------------------------------------
    def _build(self, spec: envs.EnvSpec, sink: LineSink) -> None:
        base = self._base_image_present(spec, sink)
        tag = self.tag(spec)
        sink(f"building image {tag} on {base} ({len(spec.requirements)} requirements)")
        builder = self.engine.client.containers.run(
            base,
            ["sh", "-c", self._build_script(spec)],
            detach=True,
            labels={"dockyard.build": spec.key, **self.labels(spec.key)},
            mounts=self._build_mounts(),
            network_mode=self.config.network,
        )
        try:
            lines = loglines.LineSplitter(sink)
            for message in builder.logs(stream=True, follow=True):
                lines.feed(message)
            lines.close()
            code = builder.wait()["StatusCode"]
            if code != 0:
                raise Unavailable(
                    f"image build failed (exit {code}); the run log has the build output"
                )
            self._check_python(builder, spec)
            builder.commit(
                repository=self.config.image_repo,
                tag=tag.split(":", 1)[1],
                conf={
                    "Env": [f"PATH={PATH}", "VIRTUAL_ENV=/env", "LANG=C.UTF-8"],
                    "Cmd": ["python"],
                    "Labels": self.labels(spec.key),
                },
            )
        finally:
            builder.remove(force=True)
        sink(f"built image {tag}")

    def _build_script(self, spec: envs.EnvSpec) -> str:
        """The builder's settings go into its script, not its config: a commit keeps a
        container's Env, Volumes and Cmd, and the image must not carry them."""
        env = {"UV_CACHE_DIR": "/uvcache", "UV_LINK_MODE": "copy"}
        env.update(network_environment(self.config))
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        return (
            f"export {exports} && uv venv -q /env -p python3"
            " && uv pip install --compile-bytecode -p /env/bin/python "
            + " ".join(shlex.quote(r) for r in spec.requirements)
            + " && /env/bin/python -c 'import sys; print(sys.version)'"
        )

    def _base_image_present(self, spec: envs.EnvSpec, sink: LineSink) -> str:
        base = self.base_image(spec)
        try:
            self.engine.client.images.get(base)
            return base
        except ImageNotFound:
            pass
        sink(f"pulling base image {base}")
        try:
            self.engine.client.images.pull(base)
        except DockerException as exc:
            raise Unavailable(
                f"base image {base} not found and could not be pulled ({type(exc).__name__});"
                " without a registry, build one with scripts/build-base-image.sh and set"
                " DOCKYARD_DOCKER_BASE_IMAGE=dockyard-base:py311"
            ) from exc
        return base

    def _check_python(self, builder: Any, spec: envs.EnvSpec) -> None:
        version = builder.logs(tail=1).decode().strip()
        if spec.python_version and not version.startswith(spec.python_version + "."):
            raise Unavailable(
                f"the deployment needs Python {spec.python_version}; the base"
                f" image {self.base_image(spec)} has {version.split()[0]}"
            )

    def _build_mounts(self) -> list[Mount]:
        """Bind mounts that stay out of the committed image's config (unlike `volumes`)."""
        mounts = [
            Mount("/usr/local/bin/uv", envs.uv_bin(), type="bind", read_only=True),
            Mount("/uvcache", str(uv_cache_dir()), type="bind"),
        ]
        if self.config.ca_bundle:
            mounts.append(Mount(CA_PATH, self.config.ca_bundle, type="bind", read_only=True))
        return mounts

    # collection -----------------------------------------------------------------------------
    def collect(self) -> list[str]:
        """Keep the `keep_images` environment images this server built that were used (or
        built) most recently, and any a container still uses; remove the rest of this
        server's. Images without this server's label are never touched. Returns the tags
        removed."""
        if self.server_id is None:
            return []
        client = self.engine.client
        mine = {"label": f"{SERVER_LABEL}={self.server_id}"}
        try:
            images = client.images.list(name=self.config.image_repo, filters=mine)
            in_use = {c.attrs.get("Image") for c in client.containers.list(all=True)}
        except ENGINE_ERRORS as exc:
            log.warning("image collection failed", extra={"action": "gc_images", "error": str(exc)})
            return []
        removed: list[str] = []
        for image in collectable(images, self._use_times(), in_use, self.config.keep_images):
            try:
                client.images.remove(image.id, force=False)
            except ENGINE_ERRORS:
                continue
            removed.extend(image.tags)
        if removed:
            log.info("images removed", extra={"action": "gc_images", "images": removed})
        return removed

    def _use_file(self) -> Path | None:
        return self.config.state_dir / USE_FILE if self.config.state_dir else None

    def _use_times(self) -> dict[str, float]:
        path = self._use_file()
        data = rundir.read_json(path) if path else None
        try:
            return {str(k): float(v) for k, v in (data or {}).items()}
        except (TypeError, ValueError):
            return {}

    def record_use(self, tag: str, at: float | None = None) -> None:
        """Remember when a run last started from this image (the collector keeps the most
        recently used ones); `at` in epoch seconds, the clock's now by default."""
        path = self._use_file()
        if path is None:
            return
        with self._guard:
            used = self._use_times()
            used[tag] = self.clock.now().timestamp() if at is None else at
            rundir.write_json(path, dict(sorted(used.items())))


def last_use(image: Any, used: dict[str, float]) -> float:
    """When a run last started from this image, else when it was built (epoch seconds)."""
    built = epoch(image.attrs.get("Created")) or 0.0
    return max([built, *(used.get(tag, 0.0) for tag in image.tags)])


def collectable(
    images: Iterable[Any], used: dict[str, float], in_use: set[Any], keep: int
) -> list[Any]:
    """The images to remove: all but the `keep` used most recently, and none a container
    still uses."""
    newest_first = sorted(images, key=lambda i: last_use(i, used), reverse=True)
    return [image for image in newest_first[keep:] if image.id not in in_use]


def uv_cache_dir() -> Path:
    """The controller's uv cache, shared with image builds (so they reuse its downloads)."""
    out = subprocess.run([envs.uv_bin(), "cache", "dir"], capture_output=True, text=True)
    path = Path(out.stdout.strip() or Path.home() / ".cache" / "uv")
    path.mkdir(parents=True, exist_ok=True)
    return path
