"""The pause of a full garbage collection in `hdhub run all`, with start-up's objects
frozen (``hdhub.common.heap.settle``, what `hdhub run` and `hdhub worker` do once started)
against without (CPython's default), in the same run.

Starts every service in this process as `hdhub run all` does (embedded defaults: SQLite,
the demo data, migrations), then, for a few rounds: the objects unfrozen, ``--requests``
requests served (a nurse's registrations list and a registration's page of the v2 menu,
through the app in this process), and a full collection timed (what each one costs the
process while it answers nothing); then ``settle()``, the same requests, and a full
collection timed again. Prints the objects the collector tracks, both pauses per round,
their medians and the ratio settled / default (lower is better).

    .venv/bin/python bench/bench_gc.py [--rounds 5] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def full_collection() -> float:
    started = time.perf_counter()
    gc.collect()
    return time.perf_counter() - started


async def measure(rounds: int, requests: int) -> tuple[int, list[float], list[float]]:
    import httpx
    import uvicorn
    from bench_portal import password_token
    from bench_submissions import free_port

    from hdhub.cli import main as cli
    from hdhub.common.config import SERVICES
    from hdhub.common.heap import settle

    port = free_port()
    cli._configure(port)
    platform = cli._platform(list(SERVICES), migrate=True, seed=True, workers=False, serving=False)
    server = uvicorn.Server(uvicorn.Config(platform.app(), port=port, log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            while not server.started:
                await asyncio.sleep(0.1)
            # The password grant as the portal's bench asks it, on a thread: the server runs
            # on this thread's event loop.
            token = await asyncio.to_thread(password_token, base, "nurse@az-demo.test", "demo-nurse")
            headers = {"Authorization": f"Bearer {token}"}

            async def serve() -> None:
                for _ in range(requests // 2):
                    listed = await client.get(
                        "/api/v1/registrations?organisation_id=az-demo", headers=headers
                    )
                    menu = await client.get(
                        "/proxy/api/dcd/menu/structure?organization-id=az-demo", headers=headers
                    )
                    assert listed.status_code == 200 and menu.status_code == 200, (listed.text, menu.text)

            default, settled = [], []
            tracked = 0
            for _ in range(rounds):
                gc.unfreeze()
                gc.collect()
                tracked = len(gc.get_objects())
                await serve()
                default.append(full_collection())
                settle()
                await serve()
                settled.append(full_collection())
        return tracked, default, settled
    finally:
        gc.unfreeze()
        server.should_exit = True
        await serving


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200, help="requests served before each collection")
    parser.add_argument("--quick", action="store_true", help="bench-check's short run: 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 3
    from _result import load_average, result

    print(f"load average at the start: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench-gc-") as tmp:
        os.environ["HDHUB_DATA_DIR"] = str(Path(tmp) / "var")
        os.environ.setdefault("HDHUB_LOG_LEVEL", "WARNING")
        tracked, default, settled = asyncio.run(measure(args.rounds, args.requests))
    print(f"objects the collector tracks once `hdhub run all` has started: {tracked:,}")
    print(f"before each collection: {args.requests} requests served")
    for i, (d, s) in enumerate(zip(default, settled, strict=True), 1):
        print(f"round {i}: a full collection {d * 1000:7.1f} ms by default, {s * 1e6:6.0f} µs settled")
    d, s = statistics.median(default), statistics.median(settled)
    print(f"median: {d * 1000:.1f} ms by default, {s * 1e6:.0f} µs settled: {s / d:.4f}x")
    result({"settled_over_default": s / d})


if __name__ == "__main__":
    main()
