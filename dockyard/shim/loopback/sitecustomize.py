"""Every Python process of an app (interactive run) listens on loopback only.

dlt's launchers bind every interface (marimo `--host 0.0.0.0`, streamlit
`--server.address=0.0.0.0`, the MCP and dashboard launchers `host="0.0.0.0"`) and start
apps without a token, so on the local executor an app would answer anyone who reaches the
machine, around dockyard's login, tokens and public links. The proxy connects to
`127.0.0.1:<port>`; nothing else needs to reach the app.

The local executor puts this folder first on `PYTHONPATH` for interactive runs, so Python
imports this module at start-up in the launcher and in every interpreter it execs (marimo
and streamlit run as new processes, which inherit the environment). It wraps
`socket.socket.bind` so that a wildcard address becomes loopback:

- IPv4 `0.0.0.0` or `''` → `127.0.0.1`;
- IPv6 `::` or `''` → `::ffff:127.0.0.1` on a dual-stack socket (it accepts what the proxy
  sends to 127.0.0.1, as `::` would have), `::1` on an IPv6-only one.

Anything else (a specific address, a Unix socket) is left alone. This guards against
launchers that bind too widely, not against a job that means harm: one that wants to listen
elsewhere can bypass Python's socket module; docs/security.md says what isolates that.
Standard library only: it runs inside the workspace's own environment. Any other
`sitecustomize` further down `sys.path` (Debian ships one) still runs afterwards.
"""

import importlib.machinery
import importlib.util
import os
import socket
import sys

_WILDCARD_V4 = ("0.0.0.0", "")  # noqa: S104
_WILDCARD_V6 = ("::", "", "0:0:0:0:0:0:0:0", "::0")


def loopback_address(family: int, address: object, v6only: bool) -> object:
    """The address to bind instead of `address` (unchanged unless it is a wildcard)."""
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return address
    host = address[0]
    if family == socket.AF_INET and host in _WILDCARD_V4:
        return ("127.0.0.1", *address[1:])
    if family == socket.AF_INET6 and host in _WILDCARD_V6:
        return ("::1" if v6only else "::ffff:127.0.0.1", *address[1:])
    return address


def _v6only(sock: socket.socket) -> bool:
    try:
        return bool(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
    except OSError:
        return True


_bind = socket.socket.bind


def _loopback_bind(self: socket.socket, address: object) -> None:
    v6only = self.family == socket.AF_INET6 and _v6only(self)
    _bind(self, loopback_address(self.family, address, v6only))  # type: ignore[arg-type]


def _install() -> None:
    if getattr(socket.socket.bind, "__name__", "") != _loopback_bind.__name__:
        socket.socket.bind = _loopback_bind  # type: ignore[method-assign,assignment]


def _run_next_sitecustomize() -> None:
    """The `sitecustomize` this module shadows, if there is one further down the path."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception:  # site.py would also only report it, and go on
        print(f"dockyard: error in {spec.origin}; it was skipped", file=sys.stderr)


_install()
_run_next_sitecustomize()
