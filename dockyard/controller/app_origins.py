"""Every app has an origin of its own: `http://<app>--<workspace>.<apps domain>[:port]/`.

An app's pages run JavaScript written by whoever deployed it. On the dashboard's origin that
JavaScript could read the dashboard with its viewer's session and act for them (mint a token
as an admin). On an origin of its own it can read nothing of the dashboard's, and the
dashboard's cookie (host-only, on the dashboard's host) is never sent to it. One origin per
app, not one for all apps, so that one app cannot read another's pages either.

The apps domain is the setting `DOCKYARD_APPS_DOMAIN` (`[scheme://]host[:port]`), by
default `apps.localhost` with the server's port: browsers resolve every `*.localhost` name
to loopback, so this works on one machine with no DNS. The server answers both kinds of
host on the same port and tells them apart by the `Host` header.

A host name is one DNS label per app: the app's name and its workspace's, lowercased, `_`
and `.` as `-`, joined by `--` (`weather_notebook` in `demo` →
`weather-notebook--demo`); at most 63 characters. Pure functions: no I/O.
"""

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from dockyard.errors import InvalidInput
from dockyard.settings import Settings

DEFAULT_APPS_HOST = "apps.localhost"
SEPARATOR = "--"
LABEL_MAX = 63
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_PART = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_PART}(?:\.{_PART})*$")


@dataclass(frozen=True, slots=True)
class AppsDomain:
    """Where apps are served: `<scheme>://<label>.<host>[:<port>]/`."""

    scheme: str
    host: str
    port: int | None  # None: the scheme's default port

    def origin(self, label: str) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{label}.{self.host}{port}"

    def label_of(self, host_header: str) -> str | None:
        """The app label a `Host` header names (`x--ws.apps.localhost:8765` → `x--ws`), or
        None for a host outside the apps domain (the dashboard's)."""
        name = _hostname(host_header)
        suffix = "." + self.host
        if not name.endswith(suffix):
            return None
        label = name[: -len(suffix)]
        return label if label and "." not in label else None


def _hostname(host_header: str) -> str:
    """`Host` without its port, lowercased, no trailing dot (`[::1]:80` → `[::1]`)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")


@lru_cache(maxsize=16)
def domain(settings: Settings) -> AppsDomain:
    """The apps domain from the settings; InvalidInput names a bad `DOCKYARD_APPS_DOMAIN`."""
    public = urlsplit(settings.public_url) if settings.public_url else None
    value = settings.apps_domain or DEFAULT_APPS_HOST
    parts = urlsplit(value if "://" in value else f"//{value}")
    scheme = parts.scheme or (public.scheme if public else "") or "http"
    try:
        host, port = (parts.hostname or "").rstrip("."), parts.port
    except ValueError:
        host, port = "", None
    if scheme not in ("http", "https") or not _HOST.match(host) or parts.path not in ("", "/"):
        raise InvalidInput(
            f"DOCKYARD_APPS_DOMAIN={value!r} is not a host name like `apps.example.org`"
            " (optionally `https://apps.example.org:8443`); fix the setting"
        )
    if port is None and not parts.scheme:  # a bare host: on the dashboard's port
        port = settings.port if public is None else public.port
    return AppsDomain(scheme, host, port)


def check(settings: Settings) -> AppsDomain:
    """The apps domain, refused when it would hold the dashboard's own host (its cookie and
    pages would then be an app's neighbours)."""
    apps = domain(settings)
    dashboard = _hostname(urlsplit(settings.base_url).netloc)
    if dashboard == apps.host or dashboard.endswith("." + apps.host):
        raise InvalidInput(
            f"the dashboard's host {dashboard} is inside the apps domain {apps.host}; give"
            " apps a domain of their own (DOCKYARD_APPS_DOMAIN, e.g. apps.<dashboard host>)"
        )
    return apps


def dns_name(name: str) -> str:
    """A workspace's or app's name as it appears in a host name."""
    return name.lower().replace("_", "-").replace(".", "-")


def label(workspace: str, app: str) -> str:
    """The app's host label, `<app>--<workspace>`; InvalidInput when it cannot be one."""
    text = f"{dns_name(app)}{SEPARATOR}{dns_name(workspace)}"
    if len(text) > LABEL_MAX:
        raise InvalidInput(
            f"app {app!r} of workspace {workspace!r} cannot have a host name: {text!r} is"
            f" {len(text)} characters, DNS allows {LABEL_MAX}; shorten the job's or the"
            " workspace's name"
        )
    if not _LABEL.match(text) or text.startswith("xn--"):
        raise InvalidInput(
            f"app {app!r} of workspace {workspace!r} cannot have a host name ({text!r} is not"
            " a DNS label: letters, digits and inner hyphens); rename the job or workspace"
        )
    return text


def candidates(label_text: str) -> list[tuple[str, str]]:
    """Every way to read a label as (app part, workspace part): split at each `--`."""
    out = []
    start = label_text.find(SEPARATOR)
    while start != -1:
        out.append((label_text[:start], label_text[start + len(SEPARATOR) :]))
        start = label_text.find(SEPARATOR, start + 1)
    return [(a, w) for a, w in out if a and w]


def app_url(settings: Settings, workspace: str, app: str) -> str:
    return domain(settings).origin(label(workspace, app)) + "/"


def same_origin(origin: str, host_header: str) -> bool:
    """Whether an `Origin` header names the host the request was sent to (scheme aside: a
    TLS-terminating proxy in front changes the scheme the server sees)."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc.lower() == host_header.strip().lower()
