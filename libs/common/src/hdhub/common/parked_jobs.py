"""The operator's parked background jobs over gRPC, the same in every service with a job
queue (registrations, uploads, intake, nippin): ``ListParkedJobs``, ``RetryParkedJobs``
and ``ArchiveParkedJobs``. Each service's proto declares the same messages; its servicer
hands them here with its database, its ``Job`` model and its proto module.

Operator only (a member of the organisation, even its User Manager, is refused); counts
only (no payload, no subject, no error text); each action logged with the organisation,
kind, error type, count and operator, and needs the operator's reason (the portal audits it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from hdhub.common.db import Database, utcnow
from hdhub.common.errors import organisation_required
from hdhub.common.grpc import require_operator
from hdhub.common.jobs import archive_parked, parked_job_groups, retry_parked

log = logging.getLogger("hdhub.jobs")


async def list_parked_jobs(pb: Any, request: Any, db: Database, model: type[Any]) -> Any:
    """``ListParkedJobs``: the parked (or, ``archived``, the archived) job groups of one
    organisation or every one."""
    require_operator()
    archived = bool(getattr(request, "archived", False))
    found = await parked_job_groups(
        db, model, organisation_id=request.organisation_id or None, archived=archived
    )
    return pb.ListParkedJobsResponse(
        groups=[
            pb.ParkedJobGroup(
                organisation_id=g.organisation_id,
                kind=g.kind,
                error_type=g.error_type,
                jobs=g.jobs,
                max_attempts=g.max_attempts,
                oldest_at=g.oldest_at.isoformat() if g.oldest_at else "",
                archived=archived,
            )
            for g in found
        ]
    )


async def retry_parked_jobs(
    pb: Any,
    request: Any,
    db: Database,
    model: type[Any],
    *,
    service: str,
    refused_kinds: Mapping[str, str] | None = None,
    wake: Callable[[], None] | None = None,
) -> Any:
    """``RetryParkedJobs``: queue an organisation's parked (or archived) jobs again, of one
    kind and error type or all; ``refused_kinds`` are retried by another action."""
    principal = require_operator()
    if not request.organisation_id:
        raise organisation_required()
    retried = await retry_parked(
        db,
        model,
        organisation_id=request.organisation_id,
        reason=request.reason,
        kind=request.kind or None,
        error_type=request.error_type or None,
        archived=request.archived,
        refused_kinds=refused_kinds,
        now=utcnow(),
    )
    if retried and wake is not None:
        wake()
    _logged("parked jobs retried", service, request, retried, principal.username)
    return pb.RetryParkedJobsResponse(retried=retried)


async def archive_parked_jobs(
    pb: Any,
    request: Any,
    db: Database,
    model: type[Any],
    *,
    service: str,
    refused_kinds: Mapping[str, str] | None = None,
) -> Any:
    """``ArchiveParkedJobs``: set an organisation's parked jobs aside, of one kind and error
    type or all; ``refused_kinds`` are archived by another action."""
    principal = require_operator()
    if not request.organisation_id:
        raise organisation_required()
    archived = await archive_parked(
        db,
        model,
        organisation_id=request.organisation_id,
        reason=request.reason,
        kind=request.kind or None,
        error_type=request.error_type or None,
        refused_kinds=refused_kinds,
        now=utcnow(),
    )
    _logged("parked jobs archived", service, request, archived, principal.username)
    return pb.ArchiveParkedJobsResponse(archived=archived)


def _logged(message: str, service: str, request: Any, count: int, actor: str) -> None:
    """The operator's act, without payloads or reason (free text stays in the audit)."""
    log.info(
        message,
        extra={
            "service": service,
            "organisation_id": request.organisation_id,
            "kind": request.kind or "*",
            "error_type": request.error_type or "*",
            "count": count,
            "actor": actor,
        },
    )
