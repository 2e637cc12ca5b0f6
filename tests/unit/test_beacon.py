"""The per-run beacon: HMAC tokens that let a run write to itself only, and trace summaries."""

import pytest

from dockyard.controller import beacon
from dockyard.errors import Unauthorized
from tests.unit import samples

SECRET = bytes(range(32))
RUN_ID = "0b7e5c1e-3f7a-4c55-9d1f-2f8f7d0f4a11"
OTHER_RUN_ID = "9a1d2c3b-0000-4000-8000-000000000001"


def test_a_token_names_its_run() -> None:
    token = beacon.token_for(SECRET, RUN_ID)

    assert token.startswith(RUN_ID + ".")
    assert beacon.run_id_of(SECRET, token) == RUN_ID


def test_tokens_are_deterministic_per_secret_and_run() -> None:
    assert beacon.token_for(SECRET, RUN_ID) == beacon.token_for(SECRET, RUN_ID)
    assert beacon.token_for(SECRET, RUN_ID) != beacon.token_for(SECRET, OTHER_RUN_ID)
    assert beacon.token_for(SECRET, RUN_ID) != beacon.token_for(b"another secret", RUN_ID)


def tampered() -> list[str]:
    token = beacon.token_for(SECRET, RUN_ID)
    run_id, _, digest = token.partition(".")
    flipped = ("0" if digest[0] != "0" else "1") + digest[1:]
    return [
        f"{run_id}.{flipped}",  # digest changed
        f"{OTHER_RUN_ID}.{digest}",  # digest of another run
        f"{run_id}.{digest[:-1]}",  # truncated
        f"{run_id}.{digest}0",  # extended
        run_id,  # no digest at all
        "",
        beacon.token_for(b"another secret", RUN_ID),  # signed with another server's secret
    ]


@pytest.mark.parametrize("token", tampered())
def test_a_tampered_token_is_unauthorized(token: str) -> None:
    with pytest.raises(Unauthorized, match="invalid beacon token"):
        beacon.run_id_of(SECRET, token)


def test_load_summary_of_a_pipeline_run() -> None:
    (summary,) = beacon.load_summary([samples.trace()])

    assert summary == {
        "pipeline": "numbers_pipeline",
        "destination": "duckdb",
        "dataset": "numbers",
        "tables": {"numbers": 5, "_dlt_pipeline_state": 1},
        "failed_steps": [],
        "finished_at": "2026-03-04T10:00:02.500000+00:00",
    }


def test_load_summary_names_failed_steps() -> None:
    trace = samples.trace()
    trace["steps"] = [
        trace["steps"][0],
        {"step": "normalize", "step_exception": "Schema is corrupted", "normalize_info": None},
        {"step": "run", "step_exception": "Pipeline execution failed at stage normalize"},
    ]

    (summary,) = beacon.load_summary([trace])

    assert summary["failed_steps"] == ["normalize", "run"]
    assert summary["tables"] == {}
    assert summary["destination"] is None
    assert summary["dataset"] is None


def test_load_summary_keeps_one_entry_per_trace_in_order() -> None:
    first, second = samples.trace(), samples.trace()
    second["pipeline_name"] = "other_pipeline"

    summaries = beacon.load_summary([first, second])

    assert [s["pipeline"] for s in summaries] == ["numbers_pipeline", "other_pipeline"]


def test_load_summary_tolerates_sparse_traces() -> None:
    trace = {
        "pipeline_name": "p",
        "steps": [
            "not a step",
            {"step": "normalize", "normalize_info": {"table_metrics": [{"items_count": 4}]}},
            {"step": "load", "load_info": {"destination_name": "duckdb"}},
        ],
    }

    summary = beacon.load_summary([trace])[0]

    assert summary["tables"] == {}
    assert summary["destination"] == "duckdb"
    assert beacon.load_summary([{}]) == [
        {
            "pipeline": None,
            "destination": None,
            "dataset": None,
            "tables": {},
            "failed_steps": [],
            "finished_at": None,
        }
    ]
