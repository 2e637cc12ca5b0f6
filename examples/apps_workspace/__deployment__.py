"""Apps workspace: a marimo notebook and an MCP server, each served by the runtime on its own origin."""

# Jobs:
#   jobs.weather_notebook              the marimo notebook in weather_notebook.py, detected by
#                                      dlt (interactive, launcher `marimo`); served at
#                                      http://weather-notebook--<workspace>.apps.localhost:8765/
#   jobs.__deployment__.weather_tools  an MCP server (FastMCP) returned by an
#                                      @run.interactive job; served at
#                                      http://weather-tools--<workspace>.apps.localhost:8765/mcp
# Both start when first requested and stop when idle: the notebook after the server's idle
# window (5 minutes by default), the MCP server after its own `idle_timeout` (10 minutes).
# Nothing runs at import time: generating the manifest only imports these modules.

from dlt.hub import run

import weather_notebook


@run.interactive(interface="mcp", idle_timeout="10m")
def weather_tools():
    """An MCP server with tools over the fake weather readings."""
    from fastmcp import FastMCP

    import weather_data

    mcp = FastMCP("weather-tools")

    @mcp.tool
    def cities() -> list:
        """The cities there are readings for."""
        return sorted(weather_data.CLIMATE)

    @mcp.tool
    def forecast(city: str, days: int = 3) -> list:
        """One (fake, deterministic) reading per day for a city."""
        return weather_data.readings(city, days)

    @mcp.tool
    def warmest(days: int = 7) -> str:
        """The city with the highest average temperature over the first `days` days."""
        return max(weather_data.CLIMATE, key=lambda c: weather_data.average(c, days))

    return mcp


__all__ = ["weather_notebook", "weather_tools"]
__tags__ = ["example", "offline", "apps"]
