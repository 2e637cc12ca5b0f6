"""Signing in to an app's own origin: one-time codes and app cookies (pure parts)."""

from dockyard.web import app_sessions
from dockyard.web.app_sessions import Codes, Grant

KEY = b"k" * 32
NOW = 1_800_000_000


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_code_is_good_once_for_its_app_only() -> None:
    codes = Codes()
    grant = Grant(7, NOW)

    code = codes.mint("nb--ws", grant)
    other = codes.mint("nb--ws", grant)

    assert codes.take(code, "nb--ws") == grant
    assert codes.take(code, "nb--ws") is None  # spent
    assert codes.take(other, "tiny--ws") is None  # another app's host: and now spent too
    assert codes.take(other, "nb--ws") is None
    assert codes.take("made-up", "nb--ws") is None


def test_a_code_expires() -> None:
    clock = Clock()
    codes = Codes(clock)
    code = codes.mint("nb--ws", Grant(7, NOW))

    clock.t += app_sessions.CODE_TTL_S + 1

    assert codes.take(code, "nb--ws") is None


def test_codes_are_bounded() -> None:
    codes = Codes()
    first = codes.mint("a--b", Grant(1, NOW))
    for _ in range(app_sessions.MAX_CODES):
        codes.mint("a--b", Grant(1, NOW))

    assert codes.take(first, "a--b") is None  # the oldest made room
    assert len(codes._codes) == app_sessions.MAX_CODES


def test_an_app_cookie_opens_its_own_app_only() -> None:
    value = app_sessions.cookie_value(KEY, "nb--ws", Grant(7, NOW - 60), NOW)

    assert app_sessions.read_cookie(KEY, "nb--ws", value, NOW) == Grant(7, NOW - 60, NOW)
    assert app_sessions.read_cookie(KEY, "tiny--ws", value, NOW) is None
    assert app_sessions.read_cookie(b"x" * 32, "nb--ws", value, NOW) is None
    forged = value.replace("7.", "1.", 1)
    assert app_sessions.read_cookie(KEY, "nb--ws", forged, NOW) is None
    assert app_sessions.read_cookie(KEY, "nb--ws", "7.1.2", NOW) is None


def test_an_app_cookie_is_short_lived_and_never_outlives_its_session() -> None:
    value = app_sessions.cookie_value(KEY, "nb--ws", Grant(7, NOW), NOW)
    late = NOW + app_sessions.MAX_AGE_S + 1
    assert app_sessions.read_cookie(KEY, "nb--ws", value, late) is None

    old_session = Grant(7, NOW - app_sessions.SESSION_MAX_AGE_S + 10)
    renewed = app_sessions.cookie_value(KEY, "nb--ws", old_session, NOW)
    assert app_sessions.read_cookie(KEY, "nb--ws", renewed, NOW) is not None
    assert app_sessions.read_cookie(KEY, "nb--ws", renewed, NOW + 11) is None


def test_a_cookie_in_use_is_renewed_after_a_while() -> None:
    grant = Grant(7, NOW, NOW)

    assert app_sessions.renewed(KEY, "nb--ws", grant, NOW + 5) is None
    fresh = app_sessions.renewed(KEY, "nb--ws", grant, NOW + app_sessions.RENEW_AFTER_S)
    assert fresh is not None
    later = NOW + app_sessions.RENEW_AFTER_S
    assert app_sessions.read_cookie(KEY, "nb--ws", fresh, later) == Grant(7, NOW, later)


def test_every_app_cookie_of_a_header_is_tried() -> None:
    header = 'a=1; dockyard_app=one; dockyard_session=s; dockyard_app="two"'

    assert app_sessions.cookie_values(header) == ["one", "two"]


def test_the_set_cookie_header_is_host_only_httponly_lax() -> None:
    header = app_sessions.set_cookie_header("v", secure=True)

    assert header.startswith("dockyard_app=v;")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" in header
    assert "Domain" not in header and "Path=/" in header


def test_next_stays_on_the_origin() -> None:
    for bad in ("//evil.example", "/\\evil.example", "http://evil.example", "/\t/evil", "x"):
        assert app_sessions.safe_path(bad) == "/"
    assert app_sessions.safe_path("/a?b=1#c") == "/a?b=1#c"
