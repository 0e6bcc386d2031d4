"""What nippin's nightly report reconciles against: an organisation's stored registrations
of reimbursed DCDs (submitted at least once, not deleted), each with whether its values make
a NIPPIN message, as Arrow record batches (DESIGN.md, hot paths: batches cross gRPC as Arrow,
not as one protobuf message per row).

A page holds ``registration_id``, ``registration_code``, ``dcd_code``, ``nippin_relevant``
and one string column per bound field that is no personal data, named by its xml name
(the implant date, the codes). The SSIN and names never leave.

The database does the reading: each DCD version's relevance inputs come out as JSON text
and the bound values as text, so no registration's values are decoded whole; a relevance
rule is evaluated once per distinct combination of its inputs (a handful: ``yes``/``no``),
not once per registration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pyarrow as pa
from sqlalchemy import String, cast, select

from hdhub.common.db import Database, json_value
from hdhub.registrations.batches.arrow import encode_batch
from hdhub.registrations.catalogue.service import Catalogue
from hdhub.registrations.engine.dcd import DcdDefinition
from hdhub.registrations.engine.nippin import Reimbursement, is_reimbursed, reimbursement
from hdhub.registrations.records.lifecycle import RegistrationStatus
from hdhub.registrations.store import Registration

#: Rows per page: about 5 MB of Arrow for PACEMAKER, well inside a gRPC message.
PAGE_ROWS = 50_000
ID, CODE, DCD, RELEVANT = "registration_id", "registration_code", "dcd_code", "nippin_relevant"


async def reimbursed_dcds(catalogue: Catalogue) -> list[DcdDefinition]:
    """The DCDs whose newest version binds fields for NIPPIN (the reimbursed registries), as
    their newest versions define them."""
    found = []
    for _project, dcds in await catalogue.tree():
        for dcd, versions in dcds:
            if versions:
                entry = await catalogue.get(dcd.code, versions[0].version)
                if is_reimbursed(entry.definition):
                    found.append(entry.definition)
    return found


async def _versions(catalogue: Catalogue) -> list[DcdDefinition]:
    """Every version of the reimbursed DCDs: a registration keeps the version it was made in."""
    codes = {d.dcd_code for d in await reimbursed_dcds(catalogue)}
    found = []
    for _project, dcds in await catalogue.tree():
        for dcd, versions in dcds:
            if dcd.code in codes:
                found.extend([(await catalogue.get(dcd.code, v.version)).definition for v in versions])
    return found


def _stored(r: type[Registration]) -> list[Any]:
    return [r.first_submitted_at.is_not(None), r.status != RegistrationStatus.DELETED]


async def organisations(db: Database, catalogue: Catalogue) -> list[str]:
    """The organisations with stored registrations of reimbursed DCDs."""
    codes = [d.dcd_code for d in await reimbursed_dcds(catalogue)]
    if not codes:
        return []
    r = Registration
    async with db.system_session() as session:
        found = await session.execute(
            select(r.organisation_id).where(r.dcd_code.in_(codes), *_stored(r)).distinct()
        )
        return sorted(found.scalars())


async def pages(
    db: Database, catalogue: Catalogue, organisation_id: str, registries: frozenset[str] | None = None
) -> AsyncIterator[bytes]:
    """The organisation's reimbursed registrations, one Arrow IPC stream per page (of these
    registries only, for a caller whose grants bound it; None: every one)."""
    for definition in await _versions(catalogue):
        if registries is not None and definition.project_code not in registries:
            continue
        async for page in _version_pages(db, organisation_id, definition):
            yield page


async def _version_pages(
    db: Database, organisation_id: str, definition: DcdDefinition
) -> AsyncIterator[bytes]:
    rule = reimbursement(definition)
    r = Registration
    # Relevance inputs as JSON text (typed as stored); bound values as text.
    inputs = [cast(r.values[name], String) for name in rule.names]
    public = [cast(r.values[technical].as_string(), String) for technical, _xml in rule.public]
    query = select(r.id, r.registration_code, *inputs, *public).where(
        r.organisation_id == organisation_id,
        r.dcd_code == definition.dcd_code,
        r.dcd_version == str(definition.version),
        *_stored(r),
    )
    xml_names = [xml for _technical, xml in rule.public]
    width = 2 + len(inputs) + len(public)
    async with db.session([organisation_id]) as session:
        result = await session.stream(query.execution_options(yield_per=PAGE_ROWS))
        async for part in result.partitions():
            columns = [[row[i] for row in part] for i in range(width)]
            ids, codes = columns[0], columns[1]
            relevant = _relevance(rule, columns[2 : 2 + len(inputs)], len(ids))
            batch = pa.RecordBatch.from_arrays(
                [
                    pa.array(ids, pa.string()),
                    pa.array(codes, pa.string()),
                    pa.repeat(pa.scalar(definition.dcd_code), len(ids)),
                    pa.array(relevant, pa.bool_()),
                    *(pa.array(c, pa.string()) for c in columns[2 + len(inputs) :]),
                ],
                names=[ID, CODE, DCD, RELEVANT, *xml_names],
            )
            yield encode_batch(batch)


def _relevance(rule: Reimbursement, inputs: Sequence[Sequence[str | None]], rows: int) -> list[bool]:
    """Whether each row makes a message, the rule evaluated once per distinct input."""
    if not inputs:
        return [rule.makes_message({})] * rows
    memo: dict[tuple[str | None, ...], bool] = {}
    out = []
    for key in zip(*inputs, strict=True):
        found = memo.get(key)
        if found is None:
            values = {n: json_value(t) for n, t in zip(rule.names, key, strict=True) if t is not None}
            found = memo[key] = rule.makes_message(values)
        out.append(found)
    return out
