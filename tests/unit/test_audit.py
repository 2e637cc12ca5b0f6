"""The audit log's pure parts: actor labels, bounded details, and reading who pushed what
from a receive-pack request's command lines."""

import json

from dockyard.controller import audit
from dockyard.web import git_http

OLD, NEW = "a" * 40, "b" * 40


def pkt(text: bytes) -> bytes:
    return f"{len(text) + 4:04x}".encode() + text


def test_labels_name_a_token_with_its_id_and_others_by_name() -> None:
    assert audit.Actor(audit.TOKEN, "ci", 3).label == "ci (token #3)"
    assert audit.named(audit.SCHEDULER).label == "scheduler"
    assert audit.follow_up("jobs.a.b", 4).label == "follow-up of jobs.a.b #4"


def test_details_are_bounded() -> None:
    detail = {f"k{i}": "x" * 5000 for i in range(50)}
    kept = audit.bounded(detail)
    assert len(json.dumps(kept)) <= audit.MAX_DETAIL_BYTES
    small = audit.bounded({"role": "deploy", "ids": list(range(100)), "n": 3, "none": None})
    assert small == {"role": "deploy", "ids": list(range(20)), "n": 3, "none": None}
    assert audit.bounded({"name": "y" * 500})["name"].endswith("…")


def test_the_push_command_for_main_is_read_from_the_request() -> None:
    body = pkt(f"{OLD} {NEW} refs/heads/main\0 report-status side-band-64k\n".encode())
    assert git_http.push_command(body + b"0000PACK...") == (OLD, NEW)
    created = pkt(f"{'0' * 40} {NEW} refs/heads/main\0report-status\n".encode())
    assert git_http.push_command(created + b"0000") == (None, NEW)


def test_other_refs_and_cut_or_garbled_requests_name_no_push() -> None:
    other = pkt(f"{OLD} {NEW} refs/heads/mainly\0report-status\n".encode())
    assert git_http.push_command(other + b"0000") == (None, None)
    assert git_http.push_command(other[:30]) == (None, None)
    assert git_http.push_command(b"zzzz" + other) == (None, None)
    assert git_http.push_command(b"") == (None, None)
