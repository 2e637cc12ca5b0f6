"""Hosts on one machine: network namespaces joined by a bridge (iproute2), for the tests that
put controllers, workers and PostgreSQL on separate hosts (issue 14).

A `Lab` is a bridge in the root namespace with an address of its own (the "database host":
the test's PostgreSQL listens there) and one namespace per host, each with a veth pair whose
outer end is on the bridge. Processes start inside a host with `ip netns exec`; they share the
filesystem (so several controllers share one data directory, as on shared storage) but not
the network: each host has its own loopback and one address on the lab's subnet. `cut` takes
a host's link down (a partition: its packets are dropped, its connections hang), `heal` brings
it back.

Names carry a random tag (interface names are at most 15 characters) and the subnet is picked
among 10.2xx.yy.0/24 ones no interface uses, so labs of concurrent test runs do not collide.
Each host's default route is the gateway, which masquerades it to the outside (environment
builds fetch packages from PyPI, as a real worker host does). Docker sets the FORWARD policy to
DROP and loads br_netfilter, so the lab's forwarding is accepted by rules of its own (traffic
from its bridge, and replies to it), removed with it.

Root is needed (the tests run as root here; elsewhere they skip, and fail in CI).
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field


def missing() -> str | None:
    """Why no lab can be built here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _rules(bridge: str, subnet: str) -> list[list[str]]:
    """The lab's iptables rules, each without its -I/-D."""
    return [
        ["FORWARD", "-i", bridge, "-j", "ACCEPT"],
        ["FORWARD", "-o", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"],
        ["-t", "nat", "POSTROUTING", "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"],
    ]


def _iptables(op: str, bridge: str, subnet: str) -> None:
    if shutil.which("iptables") is None:
        return
    for rule in _rules(bridge, subnet):
        table = rule[:2] if rule[0] == "-t" else []
        subprocess.run(
            ["iptables", *table, op, *rule[len(table) :]], check=False, capture_output=True
        )


def _free_subnet() -> str:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for _ in range(200):
        prefix = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        if f" {prefix}." not in used:
            return prefix
    raise RuntimeError("no free 10.2xx.yy.0/24 subnet for the lab")


@dataclass
class Host:
    name: str  # the host's label in the test ("ctl-a", "worker-1")
    netns: str  # the namespace
    ip: str
    outer: str  # the veth end on the bridge (what `cut` takes down)

    def argv(self, command: list[str]) -> list[str]:
        """`command`, run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *command]

    def cut(self) -> None:
        """Partition this host: its link to the lab goes down."""
        _ip("link", "set", self.outer, "down")

    def heal(self) -> None:
        _ip("link", "set", self.outer, "up")

    def crash(self) -> int:
        """The host dies: SIGKILL every process in its namespace; returns how many."""
        found = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True)
        pids = [int(p) for p in found.stdout.split()]
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)


@dataclass
class Lab:
    tag: str
    prefix: str  # "10.2xx.yy": the subnet's first three octets
    bridge: str
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        """The bridge's address in the root namespace (the database host)."""
        return f"{self.prefix}.1"

    @property
    def subnet(self) -> str:
        return f"{self.prefix}.0/24"

    @classmethod
    def create(cls) -> "Lab":
        tag = f"{random.randrange(16**5):05x}"
        lab = cls(tag, _free_subnet(), f"dyb{tag}")
        _ip("link", "add", lab.bridge, "type", "bridge")
        _ip("addr", "add", f"{lab.gateway}/24", "dev", lab.bridge)
        _ip("link", "set", lab.bridge, "up")
        _iptables("-I", lab.bridge, lab.subnet)
        return lab

    def add(self, name: str) -> Host:
        index = len(self.hosts) + 1
        netns, outer, inner = f"dyn{self.tag}{index}", f"dyv{self.tag}{index}", f"dyp{self.tag}"
        host = Host(name, netns, f"{self.prefix}.{10 + index}", outer)
        _ip("netns", "add", netns)
        self.hosts[name] = host
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        _ip("link", "set", inner, "netns", netns)
        inside = ["ip", "netns", "exec", netns, "ip"]
        for args in (
            ["link", "set", inner, "name", "eth0"],
            ["addr", "add", f"{host.ip}/24", "dev", "eth0"],
            ["link", "set", "eth0", "up"],
            ["link", "set", "lo", "up"],
            ["route", "add", "default", "via", self.gateway],
        ):
            subprocess.run([*inside, *args], check=True, capture_output=True)
        return host

    def close(self) -> None:
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "del", host.netns], check=False, capture_output=True)
            subprocess.run(["ip", "link", "del", host.outer], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)
        _iptables("-D", self.bridge, self.subnet)


@contextmanager
def lab(*names: str) -> Iterator[Lab]:
    """A lab with one host per name, torn down afterwards whatever happened."""
    built = Lab.create()
    try:
        for name in names:
            built.add(name)
        yield built
    finally:
        built.close()


class Balancer:
    """A TCP load balancer in the root namespace, on the lab's gateway: each connection goes to
    the next backend that accepts it (a dead controller is skipped), as any load balancer in
    front of several controllers would do. Bytes are copied both ways until either side closes.
    """

    def __init__(self, host: str, backends: list[tuple[str, int]], port: int = 0) -> None:
        self.backends = backends
        self._next = 0
        self._listener = socket.create_server((host, port))
        self.address = f"{host}:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _backend(self) -> socket.socket | None:
        for _ in range(len(self.backends)):
            self._next = (self._next + 1) % len(self.backends)
            try:
                return socket.create_connection(self.backends[self._next], timeout=2)
            except OSError:
                continue
        return None

    def _serve(self, client: socket.socket) -> None:
        upstream = self._backend()
        if upstream is None:
            client.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
