"""The connection to the Docker engine: one client, made on first use and dropped when the
engine goes away (the next call makes a new one), and the errors that mean "away"."""

import ipaddress
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from docker.errors import DockerException
from requests.exceptions import RequestException

from dockyard.errors import Unavailable

# what a call to an engine that went away raises (the SDK lets requests' errors through)
ENGINE_ERRORS = (DockerException, RequestException, OSError, Unavailable)


def where() -> str:
    """The engine's address, as the SDK finds it."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


class Engine:
    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = self._factory()
                self._client.ping()
            except DockerException as exc:
                self._client = None
                raise unreachable(exc) from exc
        return self._client

    def forget(self) -> None:
        """The engine went away: the next call connects again."""
        self._client = None

    def answers(self) -> bool:
        """Whether the engine answers a new connection right now (the current one may
        not have noticed it went away)."""
        try:
            probe = self._factory()
            probe.ping()
            probe.close()
        except ENGINE_ERRORS:
            return False
        return True

    def gateway(self, network: str) -> str:
        """The host's address on the containers' network (where the beacon listens)."""
        try:
            ipam = self.client.networks.get(network).attrs["IPAM"]["Config"][0]
            if ipam.get("Gateway"):
                return str(ipam["Gateway"])
            # older engines leave the default bridge's gateway out: it is the first address
            return str(next(ipaddress.ip_network(ipam["Subnet"]).hosts()))
        except (DockerException, KeyError, IndexError, ValueError, StopIteration) as exc:
            raise Unavailable(
                f"cannot find the gateway of docker network {network!r}: {exc}"
            ) from exc


def unreachable(exc: Exception) -> Unavailable:
    return Unavailable(
        f"docker engine unreachable at {where()} ({type(exc).__name__});"
        " start dockerd or set DOCKER_HOST"
    )


def iso(docker_time: str) -> str | None:
    """Docker's RFC 3339 nanosecond timestamps as ISO 8601 with microseconds, UTC."""
    try:
        head, _, frac = docker_time.rstrip("Z").partition(".")
        moment = datetime.fromisoformat(head).replace(tzinfo=UTC)
        micros = int((frac + "000000")[:6]) if frac else 0
        return moment.replace(microsecond=micros).isoformat()
    except ValueError:
        return None


def epoch(docker_time: str | None) -> float | None:
    """A Docker timestamp as epoch seconds (None: none, or not one)."""
    at = iso(docker_time) if docker_time else None
    return datetime.fromisoformat(at).timestamp() if at else None
