"""Offline, deterministic fake weather data and the helpers the jobs share.

Nothing here touches the network: every reading is computed from the city name and
the day number, so each run (and each machine) produces exactly the same rows.
"""

from datetime import date, timedelta
from typing import Any, Dict, Iterator, Sequence

import dlt

PIPELINE_NAME = "weather_ingest"
DATASET_NAME = "weather_data"
FIRST_DAY = date(2024, 1, 1)

# per-city climate: (base temperature in °C, daily amplitude, rain every n-th day)
_CLIMATE = {
    "Berlin": (1.5, 3.0, 3),
    "Lisbon": (11.5, 2.0, 4),
    "Oslo": (-3.0, 4.0, 2),
    "Madrid": (6.0, 3.5, 6),
    "Reykjavik": (0.0, 2.5, 2),
}
_DEFAULT_CLIMATE = (8.0, 3.0, 5)


def daily_readings(city: str, days: int) -> Iterator[Dict[str, Any]]:
    """Yields one deterministic reading per day for `city`, starting on FIRST_DAY."""
    base, amplitude, rain_every = _CLIMATE.get(city, _DEFAULT_CLIMATE)
    for n in range(days):
        # a simple saw-tooth around the base temperature, different per city
        swing = ((n * 7 + len(city)) % 5 - 2) / 2.0
        temp = round(base + amplitude * swing, 1)
        yield {
            "city": city,
            "day": FIRST_DAY + timedelta(days=n),
            "temp_c": temp,
            "rain_mm": round(1.2 * (n % 3 + 1), 1) if n % rain_every == 0 else 0.0,
            "wind_kmh": 5 + (n * 3 + len(city) * 2) % 20,
        }


@dlt.source(name="weather")
def weather_source(cities: Sequence[str], days: int) -> Any:
    """One `observations` table with a row per city and day."""

    @dlt.resource(
        name="observations",
        primary_key=["city", "day"],
        write_disposition="replace",
    )
    def observations() -> Iterator[Dict[str, Any]]:
        for city in cities:
            yield from daily_readings(city, days)

    return observations


def weather_pipeline() -> dlt.Pipeline:
    """The pipeline the ingest job writes to and the report job reads from (local DuckDB)."""
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        destination="duckdb",
        dataset_name=DATASET_NAME,
    )



def active_profile() -> str:
    """Name of the active workspace profile (`dev`, `prod`, ...).

    Without the `.dlt/.workspace` marker dlt falls back to a plain run context that has no
    profiles (and ignores `<profile>.config.toml`); say so instead of failing.
    """
    return getattr(dlt.current.run_context(), "profile", None) or "none (no .dlt/.workspace)"
