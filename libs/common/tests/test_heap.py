"""hdhub.common.heap: what start-up built is set aside from the collector, in a process
of its own (freezing is process-wide, so each case runs in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> list[int]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=True
    )
    return [int(x) for x in out.stdout.split()]


def test_settle_sets_what_lives_aside_and_collections_no_longer_walk_it() -> None:
    tracked, frozen, after = run(
        """
        import gc
        from hdhub.common.heap import settle

        built = [[i] for i in range(100_000)]  # what start-up keeps
        print(len(gc.get_objects()), settle(), len(gc.get_objects()))
        """
    )
    assert frozen >= 100_000
    assert after <= tracked - 100_000


def test_garbage_made_after_settling_is_still_collected() -> None:
    (collected,) = run(
        """
        import gc
        from hdhub.common.heap import settle

        settle()
        gc.disable()  # so that the one collection below is the one that finds them
        for _ in range(1000):
            a, b = [], []
            a.append(b)
            b.append(a)  # a cycle only the collector frees
        del a, b
        print(gc.collect())
        """
    )
    assert collected >= 2000


def test_settle_says_which_event_loop_runs_the_process() -> None:
    """The start-up line names the loop, so an operator can see `hdhub run` and `hdhub
    worker` on uvloop (a cheaper loop per packet, per message) without reading the code."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import asyncio, logging, uvloop
                from hdhub.common.heap import event_loop
                async def main():
                    return event_loop()
                print(event_loop(), asyncio.run(main()), uvloop.run(main()))
                """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["none", "asyncio", "uvloop"]
