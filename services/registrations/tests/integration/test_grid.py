"""The registrations grid over gRPC (``ListRegistrations``, ``ActOnRegistrations``):
filters, keyset pages stable under inserts, counts per status kept by the database's
triggers (checked against a count of the rows themselves), several registrations
submitted or deleted at once with each outcome said, and another organisation refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from hdhub.proto.registrations.v1 import registrations_pb2 as pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc
from hdhub.registrations.records.period import Period
from services.registrations.tests.integration.test_grpc_api import HIS, batch, stub_as
from tests.support.samples import record
from tests.support.stack import Stack

REF = pb.DcdRef(dcd_code="ANGIO_HOSP")


async def store(stub: pb_grpc.RegistrationsServiceStub, n: int, *, submit: bool = False) -> list[str]:
    reply = await stub.UpsertBatch(
        pb.UpsertBatchRequest(
            organisation_id="az-demo", dcd=REF, rows_arrow=batch([record() for _ in range(n)]), submit=submit
        )
    )
    assert all(r.outcome == pb.ROW_OUTCOME_CREATED for r in reply.results), reply
    return [r.registration_id for r in reply.results]


def since(moment: datetime, **kw: object) -> pb.ListRegistrationsRequest:
    return pb.ListRegistrationsRequest(organisation_id="az-demo", created_from=moment.isoformat(), **kw)


async def true_counts(stack: Stack, organisation: str, project: str = "") -> dict[tuple[str, str], int]:
    """Counted from the registrations themselves: what the kept counts must equal."""
    async with stack.service("registrations").db.system_session() as session:
        rows = await session.execute(
            text(
                "SELECT status, coalesce(status_confirmation, ''), count(*) FROM registrations"
                " WHERE organisation_id = :o AND (:p = '' OR project_code = :p) GROUP BY 1, 2"
            ),
            {"o": organisation, "p": project},
        )
        return {(s, c): int(n) for s, c, n in rows}


def kept(reply: pb.ListRegistrationsResponse) -> dict[tuple[str, str], int]:
    return {(c.status, c.status_confirmation): c.count for c in reply.counts}


async def counts_match(stack: Stack, stub: pb_grpc.RegistrationsServiceStub) -> dict[tuple[str, str], int]:
    """The kept counts equal the rows' own, read while nothing changed in between (the
    delivery worker moves submitted registrations along meanwhile)."""
    for _ in range(40):
        truth = await true_counts(stack, "az-demo")
        reply = await stub.ListRegistrations(pb.ListRegistrationsRequest(organisation_id="az-demo", limit=1))
        if truth == await true_counts(stack, "az-demo"):
            assert kept(reply) == truth
            return truth
        await asyncio.sleep(0.25)
    raise AssertionError("the registrations never stood still")


async def test_keyset_pages_are_stable_under_inserts_and_counts_follow(stack: Stack) -> None:
    stub = await stub_as(stack, HIS)
    t0 = datetime.now(UTC)
    opened = await store(stub, 5)
    await asyncio.sleep(0.01)
    sent = await store(stub, 2, submit=True)

    first = await stub.ListRegistrations(since(t0, limit=3))
    assert [r.id for r in first.registrations] == [*sent[::-1], opened[-1]] or len(first.registrations) == 3
    assert first.next_cursor
    # A registration arriving meanwhile does not shift the next pages.
    newcomer = await store(stub, 1)
    second = await stub.ListRegistrations(since(t0, limit=3, cursor=first.next_cursor, without_counts=True))
    third = await stub.ListRegistrations(since(t0, limit=3, cursor=second.next_cursor, without_counts=True))
    seen = [r.id for p in (first, second, third) for r in p.registrations]
    assert sorted(seen) == sorted(opened + sent) and not third.next_cursor
    assert newcomer[0] not in seen and not second.counts
    keys = [(r.updated_at, r.id) for p in (first, second, third) for r in p.registrations]
    assert keys == sorted(keys, reverse=True)
    # Oldest first is the same rows the other way round.
    ascending = await stub.ListRegistrations(since(t0, ascending=True, sort="created", limit=50))
    assert [r.id for r in ascending.registrations][:5] == opened or len(ascending.registrations) == 8

    # The counts are the rows' own, kept by the triggers (no count at the call).
    truth = await counts_match(stack, stub)
    reply = await stub.ListRegistrations(pb.ListRegistrationsRequest(organisation_id="az-demo", limit=1))
    assert reply.total_known and reply.total == sum(n for (s, _), n in truth.items() if s != "deleted")


@pytest.mark.parametrize("cap", [10_000, 2], ids=["range-read-first", "range-walked"])
async def test_pages_go_back_by_keyset_too(stack: Stack, monkeypatch: pytest.MonkeyPatch, cap: int) -> None:
    """Sorted by last change with a creation-date range, a range of at most the count's
    cap is read first and sorted, a larger one walked along the sort's index (grid.
    _sorted_apart): the same pages either way."""
    from hdhub.registrations.records import grid

    monkeypatch.setattr(grid, "COUNT_CAP", cap)
    ways: list[bool] = []
    plain = grid.page_statement

    def page_statement(*args: Any) -> Any:
        ways.append(bool(args[4:] and args[4]))
        return plain(*args)

    monkeypatch.setattr(grid, "page_statement", page_statement)
    stub = await stub_as(stack, HIS)
    t0 = datetime.now(UTC)
    await store(stub, 7)
    for sort, ascending in (("updated", False), ("created", True)):

        def ask(
            cursor: str = "", sort: str = sort, ascending: bool = ascending
        ) -> pb.ListRegistrationsRequest:
            return since(t0, limit=3, cursor=cursor, sort=sort, ascending=ascending, without_counts=True)

        first = await stub.ListRegistrations(ask())
        second = await stub.ListRegistrations(ask(first.next_cursor))
        third = await stub.ListRegistrations(ask(second.next_cursor))
        assert not first.previous_cursor and second.previous_cursor and third.previous_cursor
        assert [len(p.registrations) for p in (first, second, third)] == [3, 3, 1] and not third.next_cursor
        # Back from the last page: the same rows in the same order, and forward again.
        back = await stub.ListRegistrations(ask(third.previous_cursor))
        assert [r.id for r in back.registrations] == [r.id for r in second.registrations]
        assert back.next_cursor and back.previous_cursor
        again = await stub.ListRegistrations(ask(back.next_cursor))
        assert [r.id for r in again.registrations] == [r.id for r in third.registrations]
        start = await stub.ListRegistrations(ask(back.previous_cursor))
        assert [r.id for r in start.registrations] == [r.id for r in first.registrations]
        assert not start.previous_cursor and start.next_cursor
    # Six pages sorted by last change (the range on the other date), then six by creation.
    assert ways == [cap > 7] * 6 + [False] * 6


async def test_filters_narrow_the_grid(stack: Stack) -> None:
    stub = await stub_as(stack, HIS)
    t0 = datetime.now(UTC)
    opened = await store(stub, 2)
    sent = await store(stub, 1, submit=True)
    got = await stub.GetRegistration(pb.GetRegistrationRequest(id=sent[0]))
    code = got.registration.registration_code

    only_open = await stub.ListRegistrations(since(t0, status="open"))
    assert sorted(r.id for r in only_open.registrations) == sorted(opened)
    # A date filter: the few matches are counted (up to grid.COUNT_CAP).
    assert only_open.total_known and only_open.total == len(opened) and not only_open.more_than
    by_code = await stub.ListRegistrations(
        pb.ListRegistrationsRequest(organisation_id="az-demo", search=code)
    )
    assert [r.id for r in by_code.registrations] == sent
    by_key = await stub.ListRegistrations(
        pb.ListRegistrationsRequest(organisation_id="az-demo", search=by_code.registrations[0].business_key)
    )
    assert [r.id for r in by_key.registrations] == sent
    unconfirmed = await stub.ListRegistrations(since(t0, status_confirmation="none", dcd_code="ANGIO_HOSP"))
    # The submitted one may already be Submitted with confirmation Pending (the worker).
    assert set(opened) <= {r.id for r in unconfirmed.registrations}
    pending = await stub.ListRegistrations(since(t0, status_confirmation="pending"))
    assert not {r.id for r in pending.registrations} & set(opened)
    other_dcd = await stub.ListRegistrations(since(t0, dcd_code="ANGIO_HOSP_PCI"))
    assert not other_dcd.registrations
    other_registry = await stub.ListRegistrations(since(t0, project_code="HDBP0263"))
    assert not other_registry.registrations
    # The counts within a registry are that registry's rows only.
    assert kept(other_registry) == await true_counts(stack, "az-demo", project="HDBP0263")
    later = await stub.ListRegistrations(
        since(t0, updated_from=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    )
    assert not later.registrations
    exact = await stub.ListRegistrations(
        pb.ListRegistrationsRequest(organisation_id="az-demo", status="open", dcd_code="ANGIO_HOSP")
    )
    assert exact.total_known and exact.total == kept(exact)[("open", "")]


async def rows_counted(stack: Stack, where: str, params: dict[str, object]) -> dict[tuple[str, str], int]:
    """The registrations of az-demo matching ``where``, counted from the rows themselves."""
    async with stack.service("registrations").db.system_session() as session:
        rows = await session.execute(
            text(
                "SELECT status, coalesce(status_confirmation, ''), count(*) FROM registrations"
                f" WHERE organisation_id = 'az-demo' AND {where} GROUP BY 1, 2"
            ),
            params,
        )
        return {(s, c): int(n) for s, c, n in rows}


async def counts_are(
    stack: Stack,
    stub: pb_grpc.RegistrationsServiceStub,
    request: pb.ListRegistrationsRequest,
    where: str,
    params: dict[str, object],
) -> pb.ListRegistrationsResponse:
    """The grid's counts under ``request``'s filters equal the rows' own under ``where``
    (every filter but the status), read while nothing changed in between."""
    for _ in range(40):
        truth = await rows_counted(stack, where, params)
        reply = await stub.ListRegistrations(request)
        if truth == await rows_counted(stack, where, params):
            assert kept(reply) == truth, (request, where)
            assert reply.total_known and not reply.more_than
            wanted = request.status or None
            assert reply.total == sum(
                n for (s, _), n in truth.items() if (s == wanted if wanted else s != "deleted")
            )
            return reply
        await asyncio.sleep(0.25)
    raise AssertionError("the registrations never stood still")


async def test_counts_per_status_honour_every_filter(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from hdhub.registrations.records import grid

    stub = await stub_as(stack, HIS)
    t0 = datetime.now(UTC)
    opened = await store(stub, 3)
    await store(stub, 1, submit=True)
    [deleted, *_] = opened
    await stub.ActOnRegistrations(
        pb.ActOnRegistrationsRequest(
            organisation_id="az-demo", action="delete", registrations=[pb.RegistrationRef(id=deleted)]
        )
    )
    got = (await stub.GetRegistration(pb.GetRegistrationRequest(id=opened[1]))).registration
    version = got.dcd_version

    def ask(**filters: object) -> pb.ListRegistrationsRequest:
        return pb.ListRegistrationsRequest(organisation_id="az-demo", limit=5, **filters)  # type: ignore[arg-type]

    # Kept counts: registry, DCD, version and status confirmation are their groups.
    await counts_are(
        stack,
        stub,
        ask(dcd_code="ANGIO_HOSP", dcd_version=version),
        "dcd_code = 'ANGIO_HOSP' AND dcd_version = :v",
        {"v": version},
    )
    none = await counts_are(stack, stub, ask(dcd_version="0.0.1"), "dcd_version = '0.0.1'", {})
    assert not none.counts and none.total == 0
    await counts_are(
        stack, stub, ask(status_confirmation="none", status="open"), "status_confirmation IS NULL", {}
    )
    await counts_are(
        stack,
        stub,
        ask(status_confirmation="pending", project_code="HDBP0012"),
        "status_confirmation = 'pending' AND project_code = 'HDBP0012'",
        {},
    )
    # Counted: a date range, a search (the status filter aside: its counts are the others').
    mine = await counts_are(
        stack, stub, ask(created_from=t0.isoformat(), status="open"), "created_at >= :t", {"t": t0}
    )
    assert mine.total == 2 and kept(mine)[("deleted", "")] == 1
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await counts_are(stack, stub, ask(updated_from=later), "updated_at >= :t", {"t": later})
    found = await counts_are(
        stack,
        stub,
        ask(search=got.business_key, dcd_version=version),
        "business_key = :k",
        {"k": got.business_key},
    )
    assert found.total == 1
    # Beyond the cap the matches are not counted on, and the answer says so.
    monkeypatch.setattr(grid, "COUNT_CAP", 2)
    many = await stub.ListRegistrations(ask(created_from=t0.isoformat()))
    assert many.more_than == 2 and not many.counts and not many.total_known
    assert len(many.registrations) == 3  # the page itself is whole


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ListRegistrationsRequest(organisation_id="az-demo", cursor="not-a-cursor"), "cursor"),
        (pb.ListRegistrationsRequest(organisation_id="az-demo", status="lost"), "status"),
        (pb.ListRegistrationsRequest(organisation_id="az-demo", sort="name"), "sort"),
        (pb.ListRegistrationsRequest(organisation_id="az-demo", created_from="yesterday"), "created_from"),
        (pb.ListRegistrationsRequest(organisation_id="az-demo", limit=5000), "limit"),
        # Found by a fresh-eyes trial: each was an internal error on one backend.
        # Year 1 in Brussels is before year 1 in UTC (SQLite could not store it).
        (
            pb.ListRegistrationsRequest(
                organisation_id="az-demo", created_from="0001-01-01T00:00:00+00:17:30"
            ),
            "created_from",
        ),
        # A cursor naming a row id with a NUL (PostgreSQL's text cannot hold one).
        (
            pb.ListRegistrationsRequest(
                organisation_id="az-demo",
                cursor="WyJ1cGRhdGVkIiwgMSwgIjIwMjYtMTItMDZUMDk6MDM6MjYuODk0ODYwKzAwOjAwIiwgIlx1MDAwMCJd",
            ),
            "cursor",
        ),
        (pb.ListRegistrationsRequest(organisation_id="az-demo", search="bk\x00"), "search"),
        (pb.ListRegistrationsRequest(organisation_id="az-demo", dcd_version="1\x00"), "dcd_version"),
    ],
)
async def test_bad_filters_are_refused_with_the_field(
    stack: Stack, request_: pb.ListRegistrationsRequest, field: str
) -> None:
    stub = await stub_as(stack, HIS)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListRegistrations(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.value.details() or "") or field in str(err.value.trailing_metadata())


async def test_a_cursor_of_another_sort_is_refused(stack: Stack) -> None:
    stub = await stub_as(stack, HIS)
    await store(stub, 2)
    page = await stub.ListRegistrations(pb.ListRegistrationsRequest(organisation_id="az-demo", limit=1))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListRegistrations(
            pb.ListRegistrationsRequest(organisation_id="az-demo", sort="created", cursor=page.next_cursor)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_cursor_written_by_hand_with_a_time_without_offset_reads_it_as_utc(stack: Stack) -> None:
    """A cursor is base64 JSON anyone can write: a time without an offset is taken as UTC
    (as stored), never an internal error (SQLite refuses naive times)."""
    import base64
    import json

    stub = await stub_as(stack, HIS)
    await store(stub, 3)
    first = await stub.ListRegistrations(pb.ListRegistrationsRequest(organisation_id="az-demo", limit=1))
    sort, descending, key, id_ = json.loads(base64.urlsafe_b64decode(first.next_cursor + "=="))
    naive = datetime.fromisoformat(key).astimezone(UTC).replace(tzinfo=None).isoformat()
    cursor = (
        base64.urlsafe_b64encode(json.dumps([sort, descending, naive, id_]).encode()).decode().rstrip("=")
    )
    by_hand = await stub.ListRegistrations(
        pb.ListRegistrationsRequest(organisation_id="az-demo", limit=1, cursor=cursor)
    )
    written = await stub.ListRegistrations(
        pb.ListRegistrationsRequest(organisation_id="az-demo", limit=1, cursor=first.next_cursor)
    )
    assert [r.id for r in by_hand.registrations] == [r.id for r in written.registrations]


async def test_a_cursor_whose_time_leaves_the_calendar_in_utc_is_refused_as_damaged(stack: Stack) -> None:
    """Year 1 at +14:00 is year 0 in UTC, which no datetime holds: the cursor is damaged, not
    an internal error (found by trying the portal's grid with hand-written links)."""
    import base64
    import json

    stub = await stub_as(stack, HIS)
    for moment in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        cursor = base64.urlsafe_b64encode(json.dumps(["updated", 1, moment, "x"]).encode()).decode()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListRegistrations(
                pb.ListRegistrationsRequest(organisation_id="az-demo", cursor=cursor)
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "cursor" in str(err.value.trailing_metadata())


async def test_a_member_granted_no_registry_sees_an_empty_grid_and_no_counts(stack: Stack) -> None:
    """Registries granted: none (a member whose access request is not yet granted): an empty
    page and no counts, on both databases (an empty IN is not plain SQL)."""
    from hdhub.registrations.records.grid import GridQuery, grid_page

    stub = await stub_as(stack, HIS)
    await store(stub, 2)
    db = stack.service("registrations").db
    for query in (
        GridQuery(organisation_id="az-demo", registries=frozenset()),
        GridQuery(organisation_id="az-demo", registries=frozenset(), search="bk"),  # counted
    ):
        page = await grid_page(db, query)
        assert (page.registrations, page.counts, page.total) == ([], [], 0)
    granted = await grid_page(db, GridQuery(organisation_id="az-demo", registries=frozenset({"HDBP0012"})))
    assert len(granted.registrations) >= 2 and {r[1] for r in granted.registrations} == {"HDBP0012"}


async def test_several_are_submitted_or_deleted_each_with_its_outcome(stack: Stack) -> None:
    stub = await stub_as(stack, HIS)
    a, b, c = await store(stub, 3)
    [sent] = await store(stub, 1, submit=True)
    before = await true_counts(stack, "az-demo")
    reply = await stub.ActOnRegistrations(
        pb.ActOnRegistrationsRequest(
            organisation_id="az-demo",
            action="delete",
            registrations=[
                pb.RegistrationRef(id=a, version=1),
                pb.RegistrationRef(id=sent),  # sending: may not be deleted
                pb.RegistrationRef(id=b, version=7),  # not the version seen
            ],
        )
    )
    outcomes = {o.id: o for o in reply.outcomes}
    assert outcomes[a].done and outcomes[a].status == "deleted"
    assert not outcomes[sent].done and outcomes[sent].problem == "transition-not-allowed"
    assert not outcomes[b].done and outcomes[b].problem == "stale-version"
    reply = await stub.ActOnRegistrations(
        pb.ActOnRegistrationsRequest(
            organisation_id="az-demo",
            action="submit",
            registrations=[pb.RegistrationRef(id=b), pb.RegistrationRef(id=c)],
        )
    )
    assert [(o.done, o.status) for o in reply.outcomes] == [(True, "sending"), (True, "sending")]
    after = await counts_match(stack, stub)
    assert after[("open", "")] == before[("open", "")] - 3
    assert after[("deleted", "")] == before.get(("deleted", ""), 0) + 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ActOnRegistrations(
            pb.ActOnRegistrationsRequest(
                organisation_id="az-demo", action="approve", registrations=[pb.RegistrationRef(id=c)]
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_another_organisations_member_sees_and_changes_nothing(stack: Stack) -> None:
    stub = await stub_as(stack, HIS)
    [mine] = await store(stub, 1)
    other = await stub_as(stack, "lab-demo-lims")
    for call in (
        other.ListRegistrations(pb.ListRegistrationsRequest(organisation_id="az-demo")),
        other.ActOnRegistrations(
            pb.ActOnRegistrationsRequest(
                organisation_id="az-demo", action="delete", registrations=[pb.RegistrationRef(id=mine)]
            )
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Its own organisation's grid holds none of ours, and acting on ours there finds nothing.
    theirs = await other.ListRegistrations(pb.ListRegistrationsRequest(organisation_id="lab-demo", limit=200))
    assert mine not in [r.id for r in theirs.registrations]
    assert all(r.dcd_code != "ANGIO_HOSP" for r in theirs.registrations)
    reply = await other.ActOnRegistrations(
        pb.ActOnRegistrationsRequest(
            organisation_id="lab-demo", action="delete", registrations=[pb.RegistrationRef(id=mine)]
        )
    )
    assert not reply.outcomes[0].done and reply.outcomes[0].problem == "not-found"
    stub = await stub_as(stack, HIS)
    still = await stub.GetRegistration(pb.GetRegistrationRequest(id=mine))
    assert still.registration.status == "open"


async def test_compacted_counts_stay_the_rows_own(stack: Stack) -> None:
    from hdhub.registrations.records import grid

    stub = await stub_as(stack, HIS)
    await store(stub, 3)
    db = stack.service("registrations").db

    async def deltas() -> int:
        async with db.system_session() as session:
            sql = "SELECT count(*) FROM registration_counts WHERE organisation_id = 'az-demo'"
            return int((await session.execute(text(sql))).scalar_one())

    before = await deltas()
    await grid.compact(db, "az-demo")
    # Fewer rows (the worker may write a few more meanwhile), the same sums.
    assert await deltas() < before
    await counts_match(stack, stub)


def test_a_grid_row_is_read_in_the_order_of_its_columns() -> None:
    """``add_grid_rows`` unpacks a row by position: each column lands in its own field."""
    from hdhub.registrations.grpc import add_grid_rows
    from hdhub.registrations.records.grid import ROW_COLUMNS

    at = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    values = {
        "id": "r-1",
        "project_code": "HDBP0012",
        "dcd_code": "ANGIO_HOSP",
        "dcd_version": "1.0.0",
        "business_key": "bk-1",
        "status": "submitted",
        "status_confirmation": None,
        "registration_code": "0001-1",
        "version": 3,
        "created_at": at,
        "updated_at": at + timedelta(hours=1),
        "created_by": "nurse",
        "errors": [{"field": "X"}, {"field": "Y"}],
    }
    response = pb.ListRegistrationsResponse()
    add_grid_rows(response.registrations, [tuple(values[c.key] for c in ROW_COLUMNS)])
    assert list(response.registrations) == [
        pb.RegistrationRow(
            id="r-1",
            project_code="HDBP0012",
            dcd_code="ANGIO_HOSP",
            dcd_version="1.0.0",
            business_key="bk-1",
            status="submitted",
            status_confirmation="",
            registration_code="0001-1",
            version=3,
            created_at=at.isoformat(),
            updated_at=(at + timedelta(hours=1)).isoformat(),
            created_by="nurse",
            errors=2,
        )
    ]


@pytest.mark.parametrize(
    ("created", "updated", "ordered_by"),
    [
        (Period(datetime(2026, 11, 1, tzinfo=UTC), None), None, "registrations.created_at DESC"),
        (None, Period(None, datetime(2026, 11, 1, tzinfo=UTC)), "registrations.updated_at DESC"),
        (None, None, None),
    ],
)
def test_a_range_is_counted_along_its_own_index(
    created: Period | None, updated: Period | None, ordered_by: str | None
) -> None:
    """The capped count of a date range reads the range's index (organisation, date)
    newest first and stops at the cap: unordered, PostgreSQL chose a sequential scan that
    read the older rows first (90 ms one call in nine at 1,000,000 registrations, against
    2-3 ms along the index: bench/bench_grid.py prints the plan)."""
    from sqlalchemy.dialects import postgresql

    from hdhub.registrations.records import grid

    query = grid.GridQuery("az-demo", created=created, updated=updated, search="" if ordered_by else "bk-1")
    sql = str(grid._capped_count_statement(grid._Shape.of(query)).compile(dialect=postgresql.dialect()))
    if ordered_by is None:
        assert "ORDER BY" not in sql
    else:
        assert f"ORDER BY {ordered_by}" in sql and sql.index("ORDER BY") < sql.index("LIMIT")
