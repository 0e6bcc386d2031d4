"""The registrations grid (the portal's ``/registrations``, ``ListRegistrations``): an
organisation's registrations filtered, sorted and paged by keyset, with the counts per
status; and one action on several registrations at once, each on its own.

A page is ``WHERE organisation_id = :o [AND filters] AND (sort_key, id) < (:last_key,
:last_id) ORDER BY sort_key DESC, id DESC LIMIT :n`` over an index that leads with the
organisation (migration 0004): an index range scan as cheap at page 10,000 as at page 1,
and stable when registrations are added meanwhile (the cursor names the last row seen,
not an offset). The page before is the same scan the other way from the page's first
row (``(sort_key, id) > (:first_key, :first_id) ORDER BY sort_key, id LIMIT :n``),
turned round: keyset in both directions.

The counts per status honour every filter but the status itself (they are what choosing
another status would show). Registry, DCD, version and status confirmation are the
groups of ``registration_counts`` (deltas kept by triggers in the same transaction as
every change): summed from it, never by counting the registrations. A date range or a
search is not in those groups: the matching registrations are counted, at most
:data:`COUNT_CAP` of them (an index range scan that stops there); beyond it the grid says
"more than" instead of counts it would have to read the whole range for.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, Select, bindparam, delete, func, insert, literal_column, or_, select, tuple_

from hdhub.common.db import Database
from hdhub.common.errors import FieldProblem, Problem, invalid
from hdhub.registrations.records.lifecycle import Action, RegistrationStatus
from hdhub.registrations.records.period import Period
from hdhub.registrations.records.service import Actor, Registrations
from hdhub.registrations.store import Registration, RegistrationCount

#: The sort keys a page may ask for, each backed by an index leading with the organisation.
SORTS = {"updated": Registration.updated_at, "created": Registration.created_at}
CONFIRMATIONS = ("none", "pending", "ok", "nok")
MAX_PAGE = 200
#: Compact an organisation's count deltas into one row per group beyond this many rows.
COMPACT_ABOVE = 500
#: A date range or a search is counted up to this many registrations, no further.
COUNT_CAP = 10_000
#: One bulk action covers at most this many registrations.
MAX_BULK = 200
BULK_ACTIONS = {"submit": Action.SUBMIT, "delete": Action.DELETE}


@dataclass(frozen=True)
class GridQuery:
    organisation_id: str
    project_code: str = ""
    dcd_code: str = ""
    dcd_version: str = ""
    status: str = ""
    status_confirmation: str = ""
    created: Period | None = None
    updated: Period | None = None
    # A business key or a registration code (the grid's one search box).
    search: str = ""
    sort: str = "updated"
    descending: bool = True
    cursor: str = ""
    limit: int = 50
    # The registries (project codes) the caller may read there; None: every one.
    registries: frozenset[str] | None = None

    @property
    def kept_counts_serve(self) -> bool:
        """Whether ``registration_counts`` holds the counts under these filters (no date
        range, no search: those are not among its groups)."""
        return not (self.created or self.updated or self.search)


@dataclass
class GridPage:
    # Rows of ROW_COLUMNS, in that order.
    registrations: list[Sequence[Any]]
    next_cursor: str
    # (status, status confirmation or '', count) of the registrations matching every
    # filter but the status (deleted ones included).
    counts: list[tuple[str, str, int]] = field(default_factory=list)
    # The number of matches (the status filter too); None when not counted.
    total: int | None = None
    # Non-zero: more registrations than this match a date range or search; not counted
    # further (counts empty, total None).
    more_than: int = 0
    # The link to the page before (empty on the first page).
    previous_cursor: str = ""


def _cursor_problem(detail: str) -> Problem:
    return invalid([FieldProblem("cursor", "cursor", detail)])


def encode_cursor(sort: str, descending: bool, key: datetime, id_: str, *, before: bool = False) -> str:
    """The link to the page after the row ``(key, id_)`` (``before``: the page before it)."""
    parts: list[Any] = [sort, int(descending), key.isoformat(), id_]
    if before:
        parts.append(1)
    raw = json.dumps(parts, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, descending: bool) -> tuple[datetime, str]:
    moment, id_, _before = decode_cursor_way(cursor, sort, descending)
    return moment, id_


def decode_cursor_way(cursor: str, sort: str, descending: bool) -> tuple[datetime, str, bool]:
    """A cursor's row and whether it asks for the page before it."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        s, d, key, id_, *way = json.loads(raw)
        moment = datetime.fromisoformat(key)
        if moment.tzinfo is None:  # a cursor written by hand: its time taken as UTC, as stored
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)  # as stored; a time beyond year 1 or 9999 there is damage
        if not isinstance(id_, str) or not isinstance(s, str) or way not in ([], [1]) or "\x00" in id_:
            raise ValueError
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise _cursor_problem("The link to this page is damaged: start again from the first page.") from exc
    if s != sort or bool(d) != descending:
        raise _cursor_problem(
            "The link to this page belongs to another sort order: start from the first page."
        )
    return moment, id_, bool(way)


def validate(query: GridQuery) -> None:
    problems = []
    if query.sort not in SORTS:
        problems.append(FieldProblem("sort", "choice", f"Sort by one of: {', '.join(SORTS)}."))
    if query.status and query.status not in {s.value for s in RegistrationStatus}:
        problems.append(FieldProblem("status", "choice", "Not a registration status."))
    if query.status_confirmation and query.status_confirmation not in CONFIRMATIONS:
        problems.append(FieldProblem("status_confirmation", "choice", f"One of: {', '.join(CONFIRMATIONS)}."))
    for name, period in (("created", query.created), ("updated", query.updated)):
        if period is not None and period.empty:
            problems.append(FieldProblem(f"{name}_to", "range", "The end of the range is before its start."))
    if not 1 <= query.limit <= MAX_PAGE:
        problems.append(FieldProblem("limit", "range", f"Between 1 and {MAX_PAGE} per page."))
    for name in ("project_code", "dcd_code", "dcd_version", "search"):
        if "\x00" in getattr(query, name):  # PostgreSQL's text cannot hold it
            problems.append(FieldProblem(name, "character", "A NUL character is not allowed."))
    if problems:
        raise invalid(problems)


#: What a grid row shows: no values (patient data among them), read as plain rows;
#: ``grpc.add_grid_rows`` unpacks them in this order.
ROW_COLUMNS = (
    Registration.id,
    Registration.project_code,
    Registration.dcd_code,
    Registration.dcd_version,
    Registration.business_key,
    Registration.status,
    Registration.status_confirmation,
    Registration.registration_code,
    Registration.version,
    Registration.created_at,
    Registration.updated_at,
    Registration.created_by,
    Registration.errors,
)
_CREATED_AT, _UPDATED_AT = (
    ROW_COLUMNS.index(Registration.created_at),
    ROW_COLUMNS.index(Registration.updated_at),
)


@dataclass(frozen=True)
class _Shape:
    """Which filters a query uses, not their values: a grid statement is built and
    compiled once per shape and run with the values as parameters (building SQLAlchemy
    statements was a fifth of a page's time)."""

    registries: int | None
    project_code: bool
    dcd_code: bool
    dcd_version: bool
    status: bool
    status_confirmation: str  # '', 'none' or 'some'
    created: tuple[bool, bool]
    updated: tuple[bool, bool]
    search: bool

    @classmethod
    def of(cls, query: GridQuery) -> _Shape:
        def ends(period: Period | None) -> tuple[bool, bool]:
            return (False, False) if period is None else (period.start is not None, period.end is not None)

        conf = query.status_confirmation
        return cls(
            None if query.registries is None else len(query.registries),
            bool(query.project_code),
            bool(query.dcd_code),
            bool(query.dcd_version),
            bool(query.status),
            "" if not conf else ("none" if conf == "none" else "some"),
            ends(query.created),
            ends(query.updated),
            bool(query.search),
        )


def _params(query: GridQuery) -> dict[str, Any]:
    """The values of a query's filters, as the statements of its shape name them."""
    params: dict[str, Any] = {
        "organisation": query.organisation_id,
        "project_code": query.project_code,
        "dcd_code": query.dcd_code,
        "dcd_version": query.dcd_version,
        "status": query.status or RegistrationStatus.DELETED.value,
        "status_confirmation": query.status_confirmation,
        "search": query.search.strip(),
        "limit": query.limit + 1,
        "count_cap": COUNT_CAP + 1,
    }
    for i, registry in enumerate(sorted(query.registries or ())):
        params[f"registry_{i}"] = registry
    for name, period in (("created", query.created), ("updated", query.updated)):
        if period is not None:
            params[f"{name}_from"], params[f"{name}_to"] = period.start, period.end
    return params


def _where(shape: _Shape, table: Any, *, by_status: bool = True) -> list[Any]:
    """The filters of ``shape`` on ``table`` (registrations, or the counts for the groups
    they share), each naming its value as a parameter; ``by_status``: the status's too
    (else every status, deleted included)."""
    where = [table.organisation_id == bindparam("organisation")]
    if shape.registries == 0:  # granted no registry: nothing (an empty IN is not plain SQL,
        # and false() would fold the whole WHERE, the organisation's filter too, into false)
        where.append(literal_column("1") == literal_column("0"))
    elif shape.registries is not None:
        where.append(table.project_code.in_([bindparam(f"registry_{i}") for i in range(shape.registries)]))
    for name in ("project_code", "dcd_code", "dcd_version"):
        if getattr(shape, name):
            where.append(getattr(table, name) == bindparam(name))
    if by_status:  # deleted registrations only when asked for by their status
        status = table.status == bindparam("status")
        where.append(status if shape.status else ~status)
    if shape.status_confirmation == "none":
        where.append(table.status_confirmation.is_(None))
    elif shape.status_confirmation:
        where.append(table.status_confirmation == bindparam("status_confirmation"))
    if table is not Registration:
        return where
    for name, (start, end) in (("created", shape.created), ("updated", shape.updated)):
        column = getattr(Registration, f"{name}_at")
        if start:
            where.append(column >= bindparam(f"{name}_from", type_=column.type))
        if end:
            where.append(column < bindparam(f"{name}_to", type_=column.type))
    if shape.search:
        term: Any = bindparam("search")
        where.append(or_(Registration.business_key == term, Registration.registration_code == term))
    return where


@functools.lru_cache(maxsize=256)
def page_statement(
    shape: _Shape, sort: str, descending: bool, after: bool, range_first: bool = False
) -> Select[Any]:
    """A page's SQL: the filters, then (``after``) the keyset past the cursor's row in the
    order asked, sorted, limited (the page and one row more, to know whether there is a
    next one). ``range_first``: the registrations matching the filters are read first (a
    date range along its own index: at most :data:`COUNT_CAP` of them, known from the
    capped count), then sorted; see :func:`_sorted_apart`."""
    if range_first:
        matching = select(*ROW_COLUMNS).where(*_where(shape, Registration)).cte("matching")
        matching = matching.prefix_with("MATERIALIZED", dialect="postgresql")
        table: Any = matching.c
        q = select(*(table[c.key] for c in ROW_COLUMNS))
    else:
        table = Registration
        q = select(*ROW_COLUMNS).where(*_where(shape, Registration))
    column = getattr(table, SORTS[sort].key)
    if after:
        past = tuple_(column, table.id)
        seen = tuple_(bindparam("cursor_key", type_=SORTS[sort].type), bindparam("cursor_id"))
        q = q.where(past < seen if descending else past > seen)
    order = (column.desc(), table.id.desc()) if descending else (column, table.id)
    return q.order_by(*order).limit(bindparam("limit", type_=Integer))


def _sorted_apart(shape: _Shape, sort: str) -> bool:
    """Whether a date range is on the other date than the sort, and the sort's own date
    has none: the sort's index, walked from its end, then meets the range's registrations
    only where they lie (a creation-date range 300 days back, sorted by last change: 144
    ms at 1,000,000 registrations), while the range's own index holds them together."""
    other = shape.updated if sort == "created" else shape.created
    own = shape.created if sort == "created" else shape.updated
    return any(other) and not any(own)


def page_query(
    query: GridQuery, shape: _Shape, params: dict[str, Any], *, range_first: bool = False
) -> tuple[Select[Any], bool]:
    """The page's statement (``params`` given the cursor's row) and whether it reads the
    page before that row: then the rows before it nearest first (the page's rows in
    reverse)."""
    descending, before = query.descending, False
    if query.cursor:
        key, id_, before = decode_cursor_way(query.cursor, query.sort, query.descending)
        descending = descending != before  # the page before: the same scan the other way
        params["cursor_key"], params["cursor_id"] = key, id_
    return page_statement(shape, query.sort, descending, bool(query.cursor), range_first), before


@functools.lru_cache(maxsize=256)
def _capped_count_statement(shape: _Shape) -> Select[Any]:
    capped = (
        select(Registration.status, Registration.status_confirmation)
        .where(*_where(shape, Registration, by_status=False))
        .limit(bindparam("count_cap", type_=Integer))
    )
    # Read along the range's own index (organisation, date), so the scan stops after the
    # cap's matches whatever order the rows lie on disk. Unordered, PostgreSQL takes a
    # sequential scan with a limit: it reads every row older than the range first when the
    # newest are at the end of the table (as they are, appended), and its synchronised scans
    # start where the last one stopped: 90 ms one call in nine at 1,000,000 registrations,
    # 3 ms the others (bench/bench_grid.py's 30-day range).
    for name, (start, end) in (("created", shape.created), ("updated", shape.updated)):
        if start or end:
            capped = capped.order_by(getattr(Registration, f"{name}_at").desc())
            break
    matching = capped.subquery()
    confirmation = func.coalesce(matching.c.status_confirmation, "")
    return select(matching.c.status, confirmation, func.count()).group_by(matching.c.status, confirmation)


def counted(rows: Sequence[Sequence[Any]]) -> list[tuple[str, str, int]] | None:
    """The registrations matching every filter but the status, counted per status and
    status confirmation (the rows of :func:`_capped_count_statement`); None when more than
    :data:`COUNT_CAP` match (not counted on)."""
    if sum(int(n) for *_, n in rows) > COUNT_CAP:
        return None
    return sorted((status, conf, int(n)) for status, conf, n in rows)


@functools.lru_cache(maxsize=256)
def _counts_statement(shape: _Shape) -> Select[Any]:
    c = RegistrationCount
    # The kept counts name "no confirmation" '' (they are summed per group, and NULL is
    # no group); their status is every status.
    shape = replace(shape, status=False, status_confirmation=shape.status_confirmation and "some")
    return (
        select(c.status, c.status_confirmation, func.sum(c.n), func.count())
        .where(*_where(shape, c, by_status=False))
        .group_by(c.status, c.status_confirmation)
    )


def counts_read(
    query: GridQuery, shape: _Shape, params: dict[str, Any]
) -> tuple[Select[Any], dict[str, Any]]:
    """The statement summing the deltas within the registry, DCD, version and status
    confirmation asked for, and its parameters (read by :func:`counts`)."""
    confirmation = _confirmation(query)
    if confirmation is not None:
        params = params | {"status_confirmation": confirmation}
    return _counts_statement(shape), params


def counts(rows: Sequence[Sequence[Any]]) -> tuple[list[tuple[str, str, int]], int]:
    """Registrations per status and status confirmation (the rows of :func:`counts_read`),
    and how many delta rows that took (to compact them when they have grown)."""
    found = [(status, conf, int(n)) for status, conf, n, _ in rows if int(n)]
    return sorted(found), sum(int(deltas) for *_, deltas in rows)


def _confirmation(query: GridQuery) -> str | None:
    """The status confirmation asked for as the counts name it ('' for none), or None."""
    if not query.status_confirmation:
        return None
    return "" if query.status_confirmation == "none" else query.status_confirmation


async def compact(db: Database, organisation_id: str) -> None:
    """Replace an organisation's deltas by one row per group, in one transaction; deltas
    written meanwhile by other transactions are not seen, so not deleted, and stay."""
    c = RegistrationCount
    group = (c.organisation_id, c.project_code, c.dcd_code, c.dcd_version, c.status, c.status_confirmation)
    async with db.system_session() as session:
        if db.is_postgres:
            deleted = (
                delete(c).where(c.organisation_id == organisation_id).returning(*group, c.n).cte("deleted")
            )
            dg = [deleted.c[col.key] for col in group]
            summed = select(*dg, func.sum(deleted.c.n)).group_by(*dg).having(func.sum(deleted.c.n) != 0)
            await session.execute(insert(c).from_select([*(col.key for col in group), "n"], summed))
        else:  # SQLite: one writer at a time, two statements in the transaction
            rows = (
                await session.execute(
                    select(*group, func.sum(c.n)).where(c.organisation_id == organisation_id).group_by(*group)
                )
            ).all()
            await session.execute(delete(c).where(c.organisation_id == organisation_id))
            kept = [
                dict(zip([*(col.key for col in group), "n"], row, strict=True)) for row in rows if row[-1]
            ]
            if kept:
                await session.execute(insert(c), kept)


def totals(found: Sequence[tuple[str, str, int]], query: GridQuery) -> int:
    """The number of matches: the counts (every other filter applied) of the status asked
    for, or of every status but deleted."""
    return sum(
        n
        for status, _conf, n in found
        if (status == query.status if query.status else status != RegistrationStatus.DELETED.value)
    )


async def grid_page(db: Database, query: GridQuery, *, with_counts: bool = True) -> GridPage:
    validate(query)
    found: list[tuple[str, str, int]] | None = []
    deltas = 0
    # Read without a transaction: the page and the counts are each one statement, and at
    # READ COMMITTED a transaction would not give them one snapshot anyway; on the driver
    # itself (Database.plain_reads): the ORM was two thirds of a page's time. The page and
    # its counts are sent together, one round trip for both.
    shape, params = _Shape.of(query), _params(query)
    kept = query.kept_counts_serve
    async with db.plain_reads([query.organisation_id]) as reader:
        if _sorted_apart(shape, query.sort):
            # Counted first (along the range's index, up to the cap): a range that holds
            # at most COUNT_CAP registrations is read whole and sorted; a larger one is
            # walked along the sort's index as any other page.
            (capped,) = await reader.together([(_capped_count_statement(shape), params)])
            small = counted(list(capped))
            statement, before = page_query(query, shape, params, range_first=small is not None)
            found = small if with_counts else []
            (page,) = await reader.together([(statement, params)])
            counting: list[Any] = []
        else:
            statement, before = page_query(query, shape, params)
            reads = [(statement, params)]
            if with_counts:
                reads.append(
                    counts_read(query, shape, params) if kept else (_capped_count_statement(shape), params)
                )
            page, *counting = await reader.together(reads)
    rows = list(page)
    if counting and kept:
        found, deltas = counts(counting[0])
    elif counting:
        found = counted(counting[0])
    if deltas > COMPACT_ABOVE:
        await compact(db, query.organisation_id)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    if before:
        rows.reverse()

    key_at = _UPDATED_AT if query.sort == "updated" else _CREATED_AT

    def cursor_at(row: Sequence[Any], *, back: bool) -> str:
        return encode_cursor(query.sort, query.descending, row[key_at], row[0], before=back)

    # Going forward: a next page when a row was left over, a page before when a cursor
    # led here. Going back: the page after is where we came from; one before when left over.
    next_cursor = cursor_at(rows[-1], back=False) if rows and (more or before) else ""
    previous_cursor = (
        cursor_at(rows[0], back=True) if rows and (more if before else bool(query.cursor)) else ""
    )
    if found is None:
        return GridPage(rows, next_cursor, [], None, more_than=COUNT_CAP, previous_cursor=previous_cursor)
    total = totals(found, query) if with_counts else None
    return GridPage(rows, next_cursor, found, total, previous_cursor=previous_cursor)


@dataclass
class BulkOutcome:
    id: str
    done: bool
    status: str = ""
    # The owner's refusal: its slug, title and detail (English; the portal translates).
    problem: str = ""
    title: str = ""
    detail: str = ""
    # What names it to a person; empty when it was not found among the caller's.
    registration_code: str = ""
    dcd_code: str = ""
    dcd_version: str = ""

    def naming(self, reg: Registration) -> BulkOutcome:
        self.registration_code = reg.registration_code or ""
        self.dcd_code, self.dcd_version = reg.dcd_code, reg.dcd_version
        return self


async def act_many(
    registrations: Registrations,
    *,
    organisations: Sequence[str],
    refs: Sequence[tuple[str, int | None]],
    action: str,
    actor: Actor,
    lang: str,
) -> list[BulkOutcome]:
    """One action on each registration, each in its own transaction checked against the
    version the person saw: every one is done or refused with its reason, none half-done."""
    if action not in BULK_ACTIONS:
        raise invalid([FieldProblem("action", "choice", f"One of: {', '.join(BULK_ACTIONS)}.")])
    if not refs:
        raise invalid([FieldProblem("ids", "required", "Select at least one registration.")])
    if len(refs) > MAX_BULK:
        raise invalid([FieldProblem("ids", "range", f"At most {MAX_BULK} registrations at once.")])
    outcomes = []
    for id_, version in refs:
        try:
            reg = await registrations.act(
                organisations=organisations,
                registration_id=id_,
                expected_version=version,
                action=BULK_ACTIONS[action],
                actor=actor,
                lang=lang,
            )
        except Problem as problem:
            refused = BulkOutcome(id_, False, "", problem.slug, problem.title, problem.detail or "")
            if problem.status != 404:  # there, but its status or version refused it
                with contextlib.suppress(Problem):
                    refused.naming(await registrations.get(organisations, id_))
            outcomes.append(refused)
        else:
            outcomes.append(BulkOutcome(id_, True, reg.status).naming(reg))
    return outcomes
