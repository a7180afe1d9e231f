"""Consent records: what a record needs, and its limits said before the database refuses them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select

from flowbuilder.mail.consent import SOURCE_MAX, WHO_MAX, record_consent
from flowbuilder.store.schema import ConsentRecord
from tests.mail.conftest import add_lead

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def _record(store: Engine, lead: int, **changes: str) -> int:
    fields = {"who": "ann@example.com", "source": "call", "wording": "I agree", **changes}
    with store.begin() as conn:
        return record_consent(
            conn, lead, scope="marketing", granted=True, at=NOW, now=NOW, **fields
        )


def test_a_record_at_the_column_limits_is_stored(store: Engine) -> None:
    lead = add_lead(store, "ann@example.com", {}, consent=False)
    _record(store, lead, who="w" * WHO_MAX, source="s" * SOURCE_MAX)
    with store.connect() as conn:
        row = conn.execute(select(ConsentRecord).where(ConsentRecord.lead_id == lead)).one()
    assert len(row.who) == WHO_MAX and len(row.source) == SOURCE_MAX


@pytest.mark.parametrize(
    ("field", "limit"), [("who", WHO_MAX), ("source", SOURCE_MAX)], ids=["who", "source"]
)
def test_a_field_longer_than_its_column_is_refused_with_its_name_and_nothing_is_stored(
    store: Engine, field: str, limit: int
) -> None:
    lead = add_lead(store, "ann@example.com", {}, consent=False)
    with pytest.raises(ValueError, match=f"`{field}` holds at most {limit} characters, not"):
        _record(store, lead, **{field: "x" * (limit + 1)})
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ConsentRecord)).scalar() == 0
