"""The standalone verifier's ledger replay at a million entries.

Builds ``--entries`` log entries shaped as the platform writes them (canonical
JSON audit events): every fifth one is not a money movement (an account
opened, a dataset published), the rest are ledger transfers in the pattern a
job leaves (a grant now and then, a hold, captures against it, a void of the
rest) over ``--accounts`` allocation accounts. Then replays them with
``credits.transparency.replay.replay``, as ``credits-verify`` does after it has
checked the entries against the tiles, and checks the result adds up.

    .venv/bin/python scripts/bench/transparency_replay.py
    .venv/bin/python scripts/bench/transparency_replay.py --entries 200000

Prints::

    op=replay entries=… ledger_entries=… seconds=… entries_per_s=… cpu_seconds=… cpu_entries_per_s=…

``cpu_`` counts this process's CPU time: on a busy machine the wall clock
measures the other processes too. Target (issue 15): replay ≥ 100,000 entries/s.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator

from credits.transparency.replay import replay

SINK = 1
SOURCE = 2
FIRST_ALLOCATION = 10


def _event(kind: str, subject: str, subject_id: int, data: dict[str, object]) -> bytes:
    document = {
        "type": kind,
        "actor": "user:42",
        "subject": {"type": subject, "id": str(subject_id)},
        "at": "2026-12-03T15:00:00.000000+00:00",
        "data": data,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _transfer(
    tid: int, kind: str, debit: int, credit: int, amount: int, *, hold: int | None = None
) -> bytes:
    data = {
        "id": tid,
        "idempotency_key": f"job-{tid}",
        "part": 0,
        "kind": kind,
        "currency": "gpu",
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount": amount,
        "pending": kind == "hold",
        "pending_id": hold,
        "reference": f"job:{tid}",
        "reason": None,
    }
    return _event(f"ledger.{kind}", "ledger_transfer", tid, data)


def entries(total: int, accounts: int) -> Iterator[bytes]:
    """A job's story, repeated: grant, hold, two captures, void, and other events."""
    made, tid = 0, 0
    while made < total:
        tid += 1
        account = FIRST_ALLOCATION + tid % accounts
        hold = tid
        story = [
            _transfer(tid, "grant", SOURCE, account, 10_000_000),
            _transfer(tid + 1, "hold", account, SINK, 4_000_000),
            _transfer(tid + 2, "capture", account, SINK, 1_500_000, hold=hold + 1),
            _transfer(tid + 3, "capture", account, SINK, 500_000, hold=hold + 1),
            _transfer(tid + 4, "void", account, SINK, 2_000_000, hold=hold + 1),
            _event("dataset.version.published", "dataset_version", tid, {"files": 3}),
        ]
        tid += 5
        for item in story:
            if made == total:
                return
            made += 1
            yield item


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=500)
    args = parser.parse_args()
    log = list(entries(args.entries, args.accounts))
    started, cpu_started = time.perf_counter(), time.process_time()
    result = replay(log)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    posted = sum(a.credits_posted - a.debits_posted for a in result.accounts.values())
    if posted != 0 or any(a.debits_pending < 0 for a in result.accounts.values()):
        raise SystemExit("the replay does not add up: posted credits and debits differ")
    print(
        f"op=replay entries={len(log)} ledger_entries={result.ledger_entries} "
        f"seconds={seconds:.2f} entries_per_s={len(log) / seconds:.0f} "
        f"cpu_seconds={cpu_seconds:.2f} cpu_entries_per_s={len(log) / cpu_seconds:.0f}"
    )


if __name__ == "__main__":
    main()
