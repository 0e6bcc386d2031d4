"""Delivery to the central platform: the split flow of HD4DP v2, status confirmation and
resends (docs/delivery.md).

A submitted registration (Sending) is delivered in two halves under one technical id:

1. the patient identifiers go to pseudonymisation, which forwards the pseudonyms to the
   central platform itself (they never come back here);
2. the register variables (every field bound for healthdata that is not personal data)
   go straight to the central platform, AES-256-GCM under a fresh key wrapped for the
   central platform's RSA key, signed with the organisation's authentication key.

Every step is a job of the registrations job queue (leases, SKIP LOCKED): ``deliver``
(enqueued with the submission, send.py) and ``confirm`` (enqueued after a send,
confirm.py). A worker that dies mid-delivery leaves its lease to run out; the next worker
sends both halves again, and the central side keeps one record per technical id and
version. Time comes from an injectable clock, so tests run through ten days in seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from hdhub.common.clock import SYSTEM_CLOCK, Clock
from hdhub.common.db import Database
from hdhub.common.jobs import JobQueue
from hdhub.common.telemetry import jobs_span
from hdhub.registrations.catalogue.service import Catalogue
from hdhub.registrations.delivery.confirm import Confirmer
from hdhub.registrations.delivery.decisions import CentralDecisions
from hdhub.registrations.delivery.queue import CONFIRM, DELIVER, DELIVER_BATCH
from hdhub.registrations.delivery.send import Sender
from hdhub.registrations.settings import RegistrationsSettings
from hdhub.registrations.store import Job

log = logging.getLogger("hdhub.registrations.delivery")

#: How many batches of ``delivery_batch`` jobs one worker claims and works on side by side.
CONCURRENT_BATCHES = 4


class Delivery:
    """The delivery worker of the registrations service (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        catalogue: Catalogue,
        settings: RegistrationsSettings,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.db, self.settings, self.clock = db, settings, clock
        self.jobs = JobQueue(db, Job, service="registrations")
        self.sender = Sender(db, self.jobs, settings, catalogue)
        self.confirmer = Confirmer(db, self.jobs, settings, self.sender)
        self.decisions = CentralDecisions(db, settings, self.sender.central, catalogue, clock=clock)

    async def process_jobs(self, *, limit: int | None = None, worker: str | None = None) -> int:
        """Claim due ``deliver`` and ``confirm`` jobs and do them; the number claimed.

        Up to ``CONCURRENT_BATCHES`` batches of ``limit`` (``delivery_batch``) jobs are
        claimed at once and worked on side by side, each in transactions of its own: while
        one waits on the database or a gRPC answer, another seals or sends. All jobs of one
        registration stay in one batch. Beside them, up to ``CONCURRENT_BATCHES``
        ``deliver_batch`` jobs (a batch's submissions, about ``delivery_batch``
        registrations each), one per step."""
        now = self.clock.now()
        size = limit or self.settings.delivery_batch
        jobs = await self.jobs.claim(
            [DELIVER, CONFIRM], limit=size * CONCURRENT_BATCHES, worker=worker, now=now
        )
        shared = await self.jobs.claim([DELIVER_BATCH], limit=CONCURRENT_BATCHES, worker=worker, now=now)
        if not jobs and not shared:
            return 0
        steps = (batches(jobs, size) if jobs else []) + [[job] for job in shared]
        # Every batch runs to its end even when another fails; then the first failure is
        # raised (each batch handles its own jobs' failures, so this is the database gone).
        results = await asyncio.gather(*(self._step(batch, now) for batch in steps), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return len(jobs) + len(shared)

    async def _step(self, jobs: Sequence[Any], now: datetime) -> None:
        for kind, step in (
            (DELIVER, self.sender.deliver),
            (DELIVER_BATCH, self.sender.deliver_batch),
            (CONFIRM, self.confirmer.confirm),
        ):
            batch = [j for j in jobs if j.kind == kind]
            if not batch:
                continue
            try:
                # One span per batch: it continues the submit's trace when the batch comes
                # from one, else links to each (telemetry.jobs_span).
                with jobs_span(batch, kind) as span:
                    if kind == DELIVER_BATCH:  # how many registrations the span's jobs carry
                        span.set_attribute(
                            "hdhub.registrations", sum(len(j.payload["registrations"]) for j in batch)
                        )
                    await step(batch, now)
            except Exception as exc:  # a bug or a database failure: retried with back-off, then parked
                log.warning(
                    "delivery step failed",
                    extra={"kind": kind, "count": len(batch), "error_type": type(exc).__name__},
                )
                for job in batch:
                    await self.jobs.fail(job.id, type(exc).__name__, now=now)


def batches(jobs: Sequence[Any], size: int) -> list[list[Any]]:
    """``jobs`` in batches of about ``size``, the jobs of one registration in one batch
    (two batches never work on the same registration at the same time)."""
    by_subject: dict[Any, list[Any]] = defaultdict(list)
    for job in jobs:
        by_subject[job.subject_id].append(job)
    out: list[list[Any]] = [[]]
    for group in by_subject.values():
        if len(out[-1]) >= size:
            out.append([])
        out[-1].extend(group)
    return out
