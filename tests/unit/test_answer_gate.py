"""The answer gate's own parsing: which requests it looks at, and where it finds a parked request's deadline.

What it does with an answer (refuse before Airflow takes it, write the note) is tested on a real api-server in
tests/integration/test_approval_hitl.py and in a real browser in tests/browser/test_approval_browser.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from writeoffs_airflow.answer_gate import PATH, _deadline
from writeoffs_airflow.answers import CONFIRM, REJECT, decision_of, step_of


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        (
            "/api/v2/dags/writeoff_approval/dagRuns/manual__2026-12-07T10:00:00+00:00/taskInstances/batch.approve/3"
            "/hitlDetails",
            ("writeoff_approval", "manual__2026-12-07T10:00:00+00:00", "batch.approve", "3"),
        ),
        ("/airflow/api/v2/dags/d/dagRuns/r/taskInstances/t/-1/hitlDetails", ("d", "r", "t", "-1")),
    ],
)
def test_the_answer_route_is_recognised(path: str, parts: tuple[str, ...]) -> None:
    m = PATH.search(path)
    assert m is not None and (m["dag_id"], m["run_id"], m["task_id"], m["map_index"]) == parts


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/dags/d/dagRuns/r/hitlDetails",  # the list
        "/api/v2/dags/d/dagRuns/r/taskInstances/t/x/hitlDetails",
        "/api/v2/dags/d/dagRuns/r/taskInstances/t/1/hitlDetails/tries/1",
        "/writeoffs/batches/1/answer",
    ],
)
def test_other_routes_pass(path: str) -> None:
    assert PATH.search(path) is None


def test_the_deadline_is_read_plain_or_serialised_and_nothing_else_is_guessed() -> None:
    when = "2026-12-09T14:00:00+00:00"
    expected = datetime(2026, 12, 9, 14, tzinfo=UTC)
    assert _deadline({"deadline": when, "tier": "t"}) == expected
    assert _deadline({"__var": {"deadline": when}, "__type": "dict"}) == expected
    assert _deadline({"__var": {"deadline": {"__var": when}}}) == expected
    for junk in (None, {}, {"deadline": None}, {"deadline": "soon"}, ["deadline"], "2026-12-09"):
        assert _deadline(junk) is None


def test_the_step_and_decision_come_from_the_request_and_the_option() -> None:
    assert step_of(["Approve", REJECT]) == "approve" and step_of([CONFIRM, REJECT]) == "confirm"
    assert decision_of("confirm", CONFIRM) == "confirmed" and decision_of("approve", REJECT) == "rejected"
    with pytest.raises(KeyError):
        decision_of("reverse", "Approve reversal")
