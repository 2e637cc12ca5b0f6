"""A workspace with secrets: the tests write `.dlt/prod.secrets.toml` with random values."""

import hashlib

import dlt
from dlt.hub import run


@run.job
def use_secret():
    """Uses its API key: prints it once (the log must show *** instead) and its hash."""
    key = dlt.secrets["sources.api.key"]
    print(f"the key is {key} (printed on purpose)")
    print(f"sha256 {hashlib.sha256(key.encode()).hexdigest()}")
    run.result({"sha256": hashlib.sha256(key.encode()).hexdigest(), "echo": key})


__all__ = ["use_secret"]
