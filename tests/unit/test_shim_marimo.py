"""The shim's one change to dlt's marimo launcher: `asset_url` defaults to empty (marimo's
own server sends the front end), and a configured value still wins. Resolved by dlt itself
(the dlt of the dev environment), with the launcher's own sections."""

from collections.abc import Iterator

import pytest
from dlt._workspace.deployment import configuration
from dlt.common.configuration import resolve_configuration

from dockyard.shim import dlt_shim

SECTIONS = ("jobs", "weather_notebook")


@pytest.fixture
def local_assets() -> Iterator[None]:
    original = configuration.MarimoConfiguration
    dlt_shim.marimo_assets_from_its_own_server()
    yield
    configuration.MarimoConfiguration = original  # type: ignore[misc]


def asset_url() -> str | None:
    config = resolve_configuration(configuration.MarimoConfiguration(), sections=SECTIONS)
    return config.asset_url


def test_dlt_alone_points_marimo_at_a_cdn() -> None:
    assert "cdn.jsdelivr.net" in str(asset_url())


def test_the_default_becomes_the_notebooks_own_server(local_assets: None) -> None:
    assert asset_url() == ""
    assert configuration.MarimoConfiguration.__name__ == "MarimoConfiguration"


def test_a_configured_asset_url_still_wins(
    local_assets: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "JOBS__WEATHER_NOTEBOOK__MARIMO__ASSET_URL", "https://mirror.example/{version}"
    )
    assert asset_url() == "https://mirror.example/{version}"
