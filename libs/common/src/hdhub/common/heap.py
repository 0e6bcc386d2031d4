"""The cyclic collector in a serving process: what start-up built is set aside.

A process that has started (every module imported, the services' catalogues, ORM
metadata, templates and caches built) holds a few hundred thousand long-lived objects:
400,000 in ``hdhub run all`` with the demo data. CPython's full collection walks all of
them each time it runs, and it runs whenever enough new objects have lived long enough
(caches filling, sessions, connections): measured, 168-207 ms in which that process
answers nothing, every service of it, every SFTP session and page alike.
:func:`settle`, called once start-up is done, collects once and then freezes what is left
(``gc.freeze``: moved to a permanent generation that collections skip, as Instagram's
web servers do), so a full collection walks only what came after: 257-378 µs
(``bench/bench_gc.py``). Nothing frozen is ever freed, which is right for what start-up
built; cycles made later are collected as before.
"""

from __future__ import annotations

import asyncio
import gc
import logging

log = logging.getLogger(__name__)


def settle() -> int:
    """Collect once and freeze the survivors; how many objects are now frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info(
        "start-up done: %d objects set aside from the garbage collector (event loop: %s)",
        frozen,
        event_loop(),
    )
    return frozen


def event_loop() -> str:
    """Which event loop runs this process: ``uvloop`` (as `hdhub run` and `hdhub worker`
    choose where it is installed) or ``asyncio``; ``none`` outside one."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return "none"
    return type(loop).__module__.partition(".")[0]
