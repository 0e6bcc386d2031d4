"""The operator's actions in other services, in the installation's audit log.

The console acts through the service that owns the thing (registrations publishes a DCD
version, retries parked deliveries); identity keeps the installation's audit log. Once
the owning service has done it, the console records it there as ``operator.<action>``
with the operator's name, the organisation, what it was done to, the reason given and
how many things changed. Should that record fail, the error page says so and the log
names the action: each of these actions is safe to repeat (a second retry finds nothing
parked, a second publish changes nothing), so the operator can do it again to get it
recorded."""

from __future__ import annotations

import logging

from hdhub.portal.pages.forms import identity
from hdhub.portal.pages.web import Page
from hdhub.proto.identity.v1 import identity_pb2

log = logging.getLogger("hdhub.portal.console")


async def record_operator_action(
    page: Page,
    *,
    action: str,
    organisation_id: str = "",
    target: str = "",
    reason: str = "",
    count: int | None = None,
) -> None:
    """``action`` (``catalogue.published``) done by the signed-in operator, recorded; an
    action that counts what it changed and changed nothing (none parked, an organisation
    the service does not know) is not an act worth a line."""
    if count is not None and count <= 0:
        return
    try:
        await identity().RecordOperatorAction(
            identity_pb2.RecordOperatorActionRequest(
                action=action,
                organisation_id=organisation_id,
                target=target[:200],
                reason=reason.strip()[:500],
                count=count or 0,
            ),
            metadata=page.metadata(),
        )
    except Exception:
        log.error(
            "operator action done but not recorded in the audit log",
            extra={"action": action, "organisation_id": organisation_id},
        )
        raise
