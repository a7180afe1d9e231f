"""Enforcing the claim lease on PostgreSQL sessions that wait for a worker which stopped answering.

A claim is the transaction that decides it (decision 0004). PostgreSQL ends a session left *idle*
in its transaction after the lease by itself (`idle_in_transaction_session_timeout`), but not one
whose worker stopped in the middle of a statement: a pipelined `executemany` leaves the session
`active` and waiting to read the next message, and a worker that stopped reading leaves it waiting
to write a result. Both hold their row locks for as long as the worker sleeps. Every worker
therefore ends, once per fraction of the lease, the flowbuilder sessions of the same database that
hold a transaction and have been waiting on their client since a statement began longer ago than
the lease. Ending a session takes `pg_terminate_backend` rights over it: the workers run as one
database role, or theirs is granted `pg_signal_backend` (docs/operations.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, text

STALLED = text(
    """
    SELECT pid, application_name, pg_terminate_backend(pid) AS ended
    FROM pg_stat_activity
    WHERE datname = current_database()
      AND pid <> pg_backend_pid()
      AND application_name LIKE 'flowbuilder %'
      AND xact_start IS NOT NULL
      AND wait_event_type = 'Client'
      AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
      AND query_start < now() - make_interval(secs => :lease)
    """
)


@dataclass(frozen=True)
class Ended:
    """A session ended because its worker held a claim past the lease."""

    pid: int
    application: str


def end_stalled_claims(engine: Engine, lease_seconds: float) -> list[Ended]:
    """End the sessions that have waited on their worker, inside a transaction, for longer than
    `lease_seconds`; their row locks go back to the other workers. PostgreSQL only (SQLite has
    one writer whose lock ends with its process)."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        rows = conn.execute(STALLED, {"lease": lease_seconds}).all()
        conn.commit()
    return [Ended(int(pid), str(app)) for pid, app, ended in rows if ended]
