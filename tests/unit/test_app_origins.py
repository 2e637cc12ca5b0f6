"""Every app's own origin: host labels, the apps domain setting, reading a label back."""

from pathlib import Path

import pytest

from dockyard.controller import app_origins
from dockyard.errors import InvalidInput
from dockyard.settings import Settings


def settings(**kwargs: object) -> Settings:
    return Settings(data_dir=Path("/nowhere"), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("workspace", "app", "label"),
    [
        ("demo", "weather_notebook", "weather-notebook--demo"),
        ("t-x_y", "tools.serve", "tools-serve--t-x-y"),
        ("Ws", "MyApp", "myapp--ws"),
    ],
)
def test_a_label_is_the_apps_and_workspaces_names_as_dns(
    workspace: str, app: str, label: str
) -> None:
    assert app_origins.label(workspace, app) == label


@pytest.mark.parametrize(
    ("workspace", "app", "problem"),
    [
        ("w" * 40, "a" * 30, "DNS allows 63"),
        ("ws-", "app", "not a DNS label"),
        ("ws", "_private", "not a DNS label"),
        ("ws", "xn", "not a DNS label"),  # xn--…: browsers would read it as punycode
    ],
)
def test_names_that_make_no_label_are_refused(workspace: str, app: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        app_origins.label(workspace, app)


def test_the_longest_label_is_63_characters() -> None:
    assert len(app_origins.label("w" * 30, "a" * 31)) == 63


def test_a_label_reads_back_at_every_separator() -> None:
    assert app_origins.candidates("a--b--c") == [("a", "b--c"), ("a--b", "c")]
    assert app_origins.candidates("a---b") == [("a", "-b"), ("a-", "b")]
    assert app_origins.candidates("plain") == []


def test_the_default_apps_domain_is_apps_localhost_on_the_servers_port() -> None:
    apps = app_origins.domain(settings(port=9000))

    assert apps == app_origins.AppsDomain("http", "apps.localhost", 9000)
    assert apps.origin("nb--ws") == "http://nb--ws.apps.localhost:9000"


@pytest.mark.parametrize(
    ("value", "public", "expected"),
    [
        ("apps.example.org", None, ("http", "apps.example.org", 8765)),
        ("apps.example.org:8443", None, ("http", "apps.example.org", 8443)),
        ("https://apps.example.org", None, ("https", "apps.example.org", None)),
        ("apps.example.org", "https://dockyard.example.org", ("https", "apps.example.org", None)),
        ("Apps.Example.org.", "http://d.example.org:81", ("http", "apps.example.org", 81)),
    ],
)
def test_the_apps_domain_setting(value: str, public: str | None, expected: tuple) -> None:  # type: ignore[type-arg]
    apps = app_origins.domain(settings(apps_domain=value, public_url=public))

    assert (apps.scheme, apps.host, apps.port) == expected


@pytest.mark.parametrize("value", ["apps_x.example", "ftp://apps.example", "a..b", "x/y"])
def test_a_bad_apps_domain_is_named(value: str) -> None:
    with pytest.raises(InvalidInput, match="DOCKYARD_APPS_DOMAIN"):
        app_origins.domain(settings(apps_domain=value))


def test_the_dashboard_cannot_be_inside_the_apps_domain() -> None:
    inside = settings(apps_domain="example.org", public_url="https://dockyard.example.org")
    with pytest.raises(InvalidInput, match="inside the apps domain"):
        app_origins.check(inside)
    beside = settings(apps_domain="apps.example.org", public_url="https://example.org")
    assert app_origins.check(beside).host == "apps.example.org"


@pytest.mark.parametrize(
    ("host", "label"),
    [
        ("nb--ws.apps.localhost:8765", "nb--ws"),
        ("NB--WS.Apps.Localhost.", "nb--ws"),
        ("apps.localhost:8765", None),  # the domain itself: no app
        ("x.nb--ws.apps.localhost", None),  # one label only
        ("127.0.0.1:8765", None),
        ("evilapps.localhost", None),
        ("[::1]:8765", None),
    ],
)
def test_the_host_header_names_the_app(host: str, label: str | None) -> None:
    assert app_origins.AppsDomain("http", "apps.localhost", 8765).label_of(host) == label


def test_same_origin_compares_host_and_port() -> None:
    assert app_origins.same_origin(
        "http://nb--ws.apps.localhost:8765", "nb--ws.apps.localhost:8765"
    )
    assert app_origins.same_origin("https://d.example.org", "d.example.org")  # TLS in front
    assert not app_origins.same_origin(
        "http://other--ws.apps.localhost:8765", "nb--ws.apps.localhost:8765"
    )
    assert not app_origins.same_origin("null", "nb--ws.apps.localhost:8765")
    assert not app_origins.same_origin(
        "http://nb--ws.apps.localhost:1", "nb--ws.apps.localhost:8765"
    )
