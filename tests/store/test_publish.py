"""Publishing versions and what happens to the leads in flight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from dsl.compile import compile_text
from dsl.lint import lint
from flowbuilder.publish import PublishRefused, publish
from flowbuilder.runtime.tick import tick
from tests.store.driver import add_lead, post, publish_text, rows

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

V1 = """
template a {
  subject "A"
}
template b {
  subject "B"
}

flow drip "Drip" {
  trigger event signed_up
  first: send a
  pause: wait 3d
  second: send b
  done: end
}
"""


def _enrol(store: Engine, n: int) -> None:
    publish_text(store, V1, T0)
    for i in range(n):
        add_lead(store, f"p{i}@example.com", T0)
        post(store, f"p{i}@example.com", "signed_up", T0)
    tick(store, T0)


def test_the_first_publish_stores_version_1_of_every_flow(store: Engine) -> None:
    plan = publish_text(store, V1, T0)
    assert [(c.flow, c.status, c.new_version) for c in plan.changes] == [("drip", "new", 1)]
    assert rows(store, "SELECT flow, version FROM flow_versions") == [("drip", 1)]
    again = publish_text(store, V1, T0)
    assert not again.anything
    assert rows(store, "SELECT count(*) FROM flow_versions") == [(1,)]


def test_a_comment_only_change_publishes_nothing(store: Engine) -> None:
    publish_text(store, V1, T0)
    plan = publish_text(store, V1.replace("first: send a", "first: send a  # hello"), T0)
    assert not plan.anything


def test_leads_continue_at_the_step_of_the_same_name(store: Engine) -> None:
    _enrol(store, 3)
    v2 = V1.replace("second: send b", "second: send a")
    plan = publish_text(store, v2, T0 + timedelta(hours=1))
    [change] = plan.changes
    assert (change.status, change.old_version, change.new_version) == ("changed", 1, 2)
    assert change.changed_steps == ["second"]
    assert [(m.step, m.to, m.count) for m in change.moves] == [("pause", "pause", 3)]
    assert rows(
        store,
        "SELECT DISTINCT e.step, v.version FROM enrollments e JOIN flow_versions v ON v.id = e.version_id",
    ) == [("pause", 2)]
    tick(store, T0 + timedelta(days=3))
    assert rows(
        store, "SELECT template, count(*) FROM outbox GROUP BY template ORDER BY template"
    ) == [("a", 6)]


def test_a_renamed_step_follows_the_migrate_mapping(store: Engine) -> None:
    _enrol(store, 2)
    v2 = V1.replace("pause: wait 3d", "rest: wait 3d").replace(
        "  done: end\n", "  done: end\n\n  migrate {\n    pause -> rest\n  }\n"
    )
    dry = publish_text(store, v2, T0 + timedelta(hours=1), dry_run=True)
    [change] = dry.changes
    assert [(m.step, m.to, m.count, m.why) for m in change.moves] == [
        ("pause", "rest", 2, "migrate pause -> rest")
    ]
    assert rows(store, "SELECT count(*) FROM flow_versions") == [(1,)], "a dry run stores nothing"
    publish_text(store, v2, T0 + timedelta(hours=1))
    assert rows(store, "SELECT DISTINCT step, status FROM enrollments") == [("rest", "active")]


def test_a_removed_step_without_a_mapping_exits_its_leads_with_the_reason(store: Engine) -> None:
    _enrol(store, 2)
    v2 = V1.replace("  pause: wait 3d\n", "")
    plan = publish_text(store, v2, T0 + timedelta(hours=1))
    [move] = plan.changes[0].moves
    assert (move.step, move.to, move.count) == ("pause", None, 2)
    assert rows(store, "SELECT DISTINCT status FROM enrollments") == [("exited",)]
    [(reason,)] = rows(store, "SELECT DISTINCT reason FROM decisions WHERE kind = 'leave'")
    assert "published version 2" in str(reason) and "`pause`" in str(reason)


def test_a_workspace_with_errors_is_not_published(store: Engine) -> None:
    broken = V1.replace("second: send b", "second: send missing_template")
    compilation = compile_text(broken, "broken.flow")
    with pytest.raises(PublishRefused) as refused:
        publish(store, compilation, lint(compilation), T0)
    assert any(d.code == "FB203" for d in refused.value.diagnostics)
    assert rows(store, "SELECT count(*) FROM flow_versions") == [(0,)]
