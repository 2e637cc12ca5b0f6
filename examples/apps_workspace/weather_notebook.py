"""A marimo notebook over the fake weather readings: pick the number of days, see averages."""

import marimo

__generated_with = "0.25.2"
app = marimo.App(app_title="Weather notebook")


@app.cell
def _():
    import marimo as mo

    import weather_data

    return mo, weather_data


@app.cell
def _(mo):
    days = mo.ui.slider(1, 14, value=7, label="days")
    mo.md(f"# Weather notebook\n\n{days}")
    return (days,)


@app.cell
def _(days, mo, weather_data):
    rows = [
        {"city": city, "average °C": weather_data.average(city, days.value)}
        for city in sorted(weather_data.CLIMATE)
    ]
    warmest = max(rows, key=lambda r: r["average °C"])["city"]
    mo.vstack([mo.md(f"Warmest over {days.value} days: **{warmest}**"), mo.ui.table(rows)])
    return


if __name__ == "__main__":
    app.run()
