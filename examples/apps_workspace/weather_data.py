"""Deterministic fake weather readings, shared by the notebook and the MCP server.

Nothing here touches the network or a database: a reading is computed from the city name and
the day number, so every run (and every machine) gives the same values.
"""

from datetime import date, timedelta
from typing import Any, Dict, List

FIRST_DAY = date(2024, 1, 1)
# per city: base temperature in °C, daily amplitude
CLIMATE = {
    "Berlin": (1.5, 3.0),
    "Lisbon": (11.5, 2.0),
    "Oslo": (-3.0, 4.0),
    "Madrid": (6.0, 3.5),
    "Reykjavik": (0.0, 2.5),
}


def readings(city: str, days: int) -> List[Dict[str, Any]]:
    """One reading per day for `city`, starting on FIRST_DAY."""
    base, amplitude = CLIMATE.get(city, (8.0, 3.0))
    out = []
    for n in range(days):
        swing = ((n * 7 + len(city)) % 5 - 2) / 2.0
        out.append(
            {
                "city": city,
                "day": (FIRST_DAY + timedelta(days=n)).isoformat(),
                "temp_c": round(base + amplitude * swing, 1),
            }
        )
    return out


def average(city: str, days: int) -> float:
    values = [r["temp_c"] for r in readings(city, days)]
    return round(sum(values) / len(values), 2)
