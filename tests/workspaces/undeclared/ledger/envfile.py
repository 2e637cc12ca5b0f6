"""Reads KEY=value text with python-dotenv, imported at the top as a real module would."""

import io

from dotenv import dotenv_values


def parse(text: str) -> dict[str, str | None]:
    return dict(dotenv_values(stream=io.StringIO(text)))
