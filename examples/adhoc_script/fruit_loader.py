"""Loads a handful of fruit rows into a local DuckDB database: a plain dlt script, no decorators."""

from typing import Any, Dict, Iterator

import dlt

# deterministic data: no network, no clock, same rows on every run
FRUITS = [
    {"id": 1, "name": "apple", "color": "red", "price_cents": 45},
    {"id": 2, "name": "banana", "color": "yellow", "price_cents": 25},
    {"id": 3, "name": "cherry", "color": "red", "price_cents": 8},
    {"id": 4, "name": "kiwi", "color": "green", "price_cents": 35},
    {"id": 5, "name": "mango", "color": "orange", "price_cents": 120},
]


@dlt.source
def fruitshop(store_name: str = dlt.config.value) -> Any:
    """`store_name` comes from `[sources.fruit_loader]` in .dlt/config.toml (per profile)."""

    @dlt.resource(primary_key="id", write_disposition="replace")
    def fruits() -> Iterator[Dict[str, Any]]:
        for fruit in FRUITS:
            yield {**fruit, "store": store_name}

    return fruits


if __name__ == "__main__":
    pipeline = dlt.pipeline(
        pipeline_name="fruit_loader",
        destination="duckdb",
        dataset_name="fruitshop",
    )
    load_info = pipeline.run(fruitshop())
    load_info.raise_on_failed_jobs()
    print(load_info)

    # read the rows back so the output shows which profile's config was used
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("fruits")
        rows = client.execute_sql(
            f"SELECT store, COUNT(*), SUM(price_cents) FROM {table} GROUP BY store"
        )
    # without the .dlt/.workspace marker there are no profiles (and no prod.config.toml)
    profile = getattr(dlt.current.run_context(), "profile", None) or "none (no .dlt/.workspace)"
    print(f"profile: {profile}")
    for store, count, total in rows:
        print(f"{store}: {count} fruits, {total} cents in total")
