"""A safe request that lost its database connection runs once more; a write never does."""

from __future__ import annotations

import pytest
from flask import g
from sqlalchemy.exc import DBAPIError

from credits.api.auth import WRITES_KEY
from credits.api.read_retry import RetryingReadsFlask


class _CutOnce:
    """A view whose first call meets a connection cut (or a plain database error)."""

    def __init__(self, *, invalidated: bool = True, marks_writes: bool = False) -> None:
        self.calls = 0
        self.invalidated = invalidated
        self.marks_writes = marks_writes

    def __call__(self) -> dict[str, int]:
        self.calls += 1
        if self.marks_writes:
            g.setdefault(WRITES_KEY, True)
        if self.calls == 1:
            raise DBAPIError(
                "SELECT 1",
                {},
                OSError("server closed the connection"),
                connection_invalidated=self.invalidated,
            )
        return {"calls": self.calls}


def _app(view: _CutOnce) -> RetryingReadsFlask:
    app = RetryingReadsFlask(__name__)
    app.add_url_rule("/thing", "thing", view, methods=["GET", "POST"])
    return app


def test_a_read_that_lost_its_connection_is_answered_by_a_second_run() -> None:
    view = _CutOnce()

    response = _app(view).test_client().get("/thing")

    assert response.status_code == 200
    assert response.get_json() == {"calls": 2}


@pytest.mark.parametrize(
    ("method", "view"),
    [
        ("POST", _CutOnce()),
        ("GET", _CutOnce(marks_writes=True)),
        ("GET", _CutOnce(invalidated=False)),
    ],
    ids=["a write", "a GET that records", "an error that is not a lost connection"],
)
def test_other_failures_are_not_run_again(method: str, view: _CutOnce) -> None:
    response = _app(view).test_client().open("/thing", method=method)

    assert response.status_code == 500
    assert view.calls == 1
