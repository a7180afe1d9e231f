"""The Markdown summary `simulate --diff --format markdown` posts on a pull request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flowbuilder.simdiff import Diff, headline, markdown

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _diff() -> Diff:
    return Diff(
        added=[("kim", "welcome.tip", T + timedelta(days=3))],
        removed=[("ann", "cart.low_stock", T + timedelta(days=6))],
        moved=[
            ("ann", "cart.reminder", T + timedelta(days=1), T + timedelta(hours=4)),
            ("bo", "cart.reminder", T + timedelta(days=2), T + timedelta(days=1, hours=4)),
            ("cy", "cart.reminder", T + timedelta(days=3), T + timedelta(days=3, minutes=30)),
        ],
        endings=[("ann", "cart", "complete: three reminders sent", "still in the flow")],
        goals=[("kim", "welcome.activated", "+")],
    )


def test_the_headline_says_what_changed_in_one_line() -> None:
    assert headline(_diff()) == (
        "1 send added, 1 send removed, 3 sends moved in time, 1 lead ending differently, 1 goal gained"
    )
    assert headline(Diff()) == "no change"


def test_the_step_table_counts_each_steps_sends_and_their_typical_shift() -> None:
    text = markdown(_diff(), "main/flows", "flows")
    assert text.startswith("### Replayed population: 1 send added, 1 send removed")
    assert "Before: `main/flows` · after: `flows` · times in UTC" in text
    assert "| `cart.reminder` | 0 | 0 | 3 | 20h earlier |" in text
    assert "| `cart.low_stock` | 0 | 1 | 0 |  |" in text
    assert "| `welcome.tip` | 1 | 0 | 0 |  |" in text


def test_every_change_is_listed_per_lead_in_a_folded_section() -> None:
    text = markdown(_diff(), "main/flows", "flows")
    assert "<details><summary>1 send added</summary>" in text
    assert "- kim `welcome.tip` at 2026-03-05 09:00" in text
    assert "- ann `cart.low_stock` at 2026-03-08 09:00" in text
    assert "- cy `cart.reminder`: 2026-03-05 09:00 → 2026-03-05 09:30 (30m later)" in text
    assert "- ann in `cart`: complete: three reminders sent → **still in the flow**" in text
    assert "- kim `welcome.activated`: gained" in text
    assert text.count("<details>") == text.count("</details>") == 5


def test_long_lists_are_cut_with_a_count_of_the_rest() -> None:
    many = Diff(added=[(f"lead{i:03}", "welcome.tip", T) for i in range(60)])
    text = markdown(many, "a", "b")
    assert "- lead049 `welcome.tip`" in text and "- lead050" not in text
    assert "- … and 10 more" in text


def test_no_change_is_one_sentence() -> None:
    assert markdown(Diff(), "a", "b") == (
        "**No change** for the replayed population between `a` and `b`.\n"
    )
