"""Running the same work in several threads at once, as several processes of a store would."""

from __future__ import annotations

import threading
from collections.abc import Callable


def at_once(threads: int, work: Callable[[], None]) -> None:
    """Run `work` in `threads` threads released together; raises the first error one of
    them met."""
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            work()
        except BaseException as e:
            failures.append(e)

    running = [threading.Thread(target=run) for _ in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    if failures:
        raise failures[0]
