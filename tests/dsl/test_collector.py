"""The cyclic collector is paused while the language tools build, and only then."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bench.flows import generated_flow
from dsl.collector import collector_paused, without_collector
from dsl.compile import compile_text
from dsl.fmt import format_text
from dsl.lint import lint


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_collector_is_off_inside_and_on_again_after(collector_on: None) -> None:
    seen: list[bool] = []

    @without_collector
    def work() -> None:
        seen.append(gc.isenabled())
        with collector_paused():
            seen.append(gc.isenabled())
        seen.append(gc.isenabled())  # a nested pause leaves it to the outermost

    work()
    assert seen == [False, False, False]
    assert gc.isenabled()


def test_the_collector_stays_off_when_it_was_off() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()


def test_an_error_inside_still_turns_it_back_on(collector_on: None) -> None:
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("bad")
    assert gc.isenabled()


def test_compiling_linting_and_formatting_run_without_collections(collector_on: None) -> None:
    text = generated_flow(200)
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()
    thresholds = gc.get_threshold()
    gc.set_threshold(50, 2, 2)  # a collection every 50 allocations, were the collector on
    gc.callbacks.append(count)
    try:
        compilation = compile_text(text, "big.flow")
        during_compile = len(collections)
        lint(compilation)
        format_text(text, "big.flow")
        during_all = len(collections)
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*thresholds)
    assert compilation.ok
    # At most the one collection each time the collector comes back on, never during the work.
    assert during_compile <= 1
    assert during_all <= 3


class _Node:
    """An object the collector tracks, that can be part of a cycle."""

    def __init__(self) -> None:
        self.other: object = None


def _young_count() -> int:
    return gc.get_count()[0]


def test_what_the_pause_made_skips_the_young_generations(collector_on: None) -> None:
    gc.collect()
    with collector_paused():
        kept = [_Node() for _ in range(5_000)]
        assert _young_count() >= 5_000
    # Moved to the oldest generation when the pause ended: the next young pass does not walk them.
    assert _young_count() < 100
    young = {id(o) for o in gc.get_objects(generation=0)}
    assert not any(id(node) in young for node in kept)
    assert {id(node) for node in kept} <= {id(o) for o in gc.get_objects(generation=2)}


def test_a_cycle_made_in_the_pause_is_still_collected(collector_on: None) -> None:
    import weakref

    gc.collect()
    with collector_paused():
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        watch = weakref.ref(a)
        del a, b
    assert watch() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()  # a full collection walks the oldest generation
    assert watch() is None


def test_objects_a_program_froze_stay_frozen(collector_on: None) -> None:
    gc.collect()
    frozen = [_Node() for _ in range(100)]
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        with collector_paused():
            made = [_Node() for _ in range(100)]
        assert gc.get_freeze_count() == before  # neither unfrozen nor joined by what was made
        assert made and frozen
    finally:
        gc.unfreeze()
