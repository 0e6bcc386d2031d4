"""The DCD catalogue: imported workbooks, and their compiled form cached per version.

A DCD version is immutable once imported (re-importing the same version with other
content is refused), so a compiled version can be cached for the life of the process on
every replica without invalidation. Its state (draft, published, retired: versions.py) is
not: it is read with the DCD's versions and kept ``NEWEST_TTL_SECONDS``. A version asked for
as ``latest`` (or not named) is the newest published one: :meth:`Catalogue.get` is the one
place that reads it so.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.auth import Principal
from hdhub.common.db import Database, utcnow
from hdhub.common.errors import FieldProblem, Problem, not_found
from hdhub.common.limits import MAX_INT
from hdhub.registrations.catalogue.versions import (
    INVALIDATED_STATUSES,
    VersionState,
    check_move,
    lower_majors,
)
from hdhub.registrations.engine.dcd import Codelist, DcdDefinition, Field
from hdhub.registrations.engine.v2form import codelist_id
from hdhub.registrations.engine.validation import CompiledDcd, compile_dcd
from hdhub.registrations.engine.xlsform import WorkbookError, read_workbook
from hdhub.registrations.store import Dcd, DcdVersion, Project, Registration

NEWEST_TTL_SECONDS = 30.0
#: The version a client names to mean the newest one (HD4DP v2's word).
LATEST = "latest"


def pinned(version: str | None) -> str | None:
    """The version asked for, or None for the newest (not named, empty or ``latest``)."""
    return None if version in (None, "", LATEST) else version


@dataclass(frozen=True)
class VersionRow:
    """A version as the DCD's list of versions holds it (no workbook)."""

    version: str
    major: int
    minor: int
    patch: int
    state: VersionState

    @property
    def order(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)


@dataclass(frozen=True)
class Invalidated:
    """Registrations of one organisation in one status that a new major version invalidates."""

    organisation_id: str
    status: str
    registrations: int


@dataclass(frozen=True)
class CatalogueEntry:
    definition: DcdDefinition
    compiled: CompiledDcd

    @property
    def version(self) -> str:
        return str(self.definition.version)


class Catalogue:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._entries: dict[tuple[str, str], CatalogueEntry] = {}
        # The newest published version per DCD, re-read after NEWEST_TTL_SECONDS so that a
        # version imported or published through another replica is seen soon; imports and
        # moves here refresh it at once.
        self._newest: dict[str, tuple[float, CatalogueEntry]] = {}
        # Each DCD's versions with their states, kept as long.
        self._versions: dict[str, tuple[float, list[VersionRow]]] = {}
        self._codes: dict[str, str] = {}

    async def import_workbook(
        self, data: bytes, *, actor: str, state: VersionState = VersionState.PUBLISHED
    ) -> tuple[CatalogueEntry, bool]:
        """Import one workbook in ``state`` (the console imports drafts); returns the entry
        and whether it was new (a version imported before keeps its state).

        Raises a 422 problem naming sheet, row and column of every problem in the workbook,
        and 409 when the version exists with different content.
        """
        # Reading and compiling a workbook is CPU work for seconds on a large one (20,000
        # fields: 9 s): in a thread, so the process keeps answering (/healthz, every other
        # request; under `hdhub run all`, every service) meanwhile.
        definition = await asyncio.to_thread(_read, data)
        digest = hashlib.sha256(data).hexdigest()
        version = str(definition.version)
        async with self.db.system_session() as session:
            existing = (
                await session.execute(
                    select(DcdVersion).where(
                        DcdVersion.dcd_code == definition.dcd_code, DcdVersion.version == version
                    )
                )
            ).scalar_one_or_none()
            if existing is not None:
                if (
                    existing.sha256 != digest
                    and (await asyncio.to_thread(read_workbook, existing.workbook)).fingerprint
                    != definition.fingerprint
                ):
                    raise Problem(
                        409,
                        "dcd-version-exists",
                        "This DCD version exists with other content",
                        f"{definition.dcd_code} {version} is already imported; publish a new version instead.",
                    )
                return await self._entry(existing), False
            await _file_project_and_dcd(session, definition)
            v = definition.version
            session.add(
                DcdVersion(
                    dcd_code=definition.dcd_code,
                    version=version,
                    major=v.major,
                    minor=v.minor,
                    patch=v.patch,
                    workbook=data,
                    sha256=digest,
                    imported_by=actor,
                    state=state.value,
                )
            )
            await session.flush()
            entry = CatalogueEntry(definition, await asyncio.to_thread(compile_dcd, definition))
        self._entries[(definition.dcd_code, version)] = entry
        self._forget(definition.dcd_code)
        return entry, True

    def _forget(self, dcd_code: str) -> None:
        self._newest.pop(dcd_code, None)
        self._versions.pop(dcd_code, None)

    async def versions(self, dcd_code: str) -> list[VersionRow]:
        """The DCD's versions with their states, newest first (read at most every
        ``NEWEST_TTL_SECONDS``); 404 problem when the DCD has none."""
        kept = self._versions.get(dcd_code)
        if kept is not None and time.monotonic() - kept[0] < NEWEST_TTL_SECONDS:
            return kept[1]
        async with self.db.system_session() as session:
            rows = (
                await session.execute(
                    select(
                        DcdVersion.version,
                        DcdVersion.major,
                        DcdVersion.minor,
                        DcdVersion.patch,
                        DcdVersion.state,
                    ).where(DcdVersion.dcd_code == dcd_code)
                )
            ).all()
        if not rows:
            raise not_found(f"DCD {dcd_code}")
        found = sorted(
            (VersionRow(v, a, b, c, VersionState(state)) for v, a, b, c, state in rows),
            key=lambda r: r.order,
            reverse=True,
        )
        self._versions[dcd_code] = (time.monotonic(), found)
        return found

    async def state_of(self, entry: CatalogueEntry) -> VersionState:
        return next(
            r.state for r in await self.versions(entry.definition.dcd_code) if r.version == entry.version
        )

    async def set_state(
        self, dcd_code: str, version: str, state: VersionState, *, actor: str
    ) -> VersionState:
        """Publish or retire a version (catalogue/versions.py says which moves are allowed);
        who and when are kept on it. Returns the state it had."""
        async with self.db.system_session() as session:
            row = (
                await session.execute(
                    select(DcdVersion)
                    .where(DcdVersion.dcd_code == dcd_code, DcdVersion.version == version)
                    .with_for_update()
                )
            ).scalar_one_or_none()
            if row is None:
                raise not_found(f"DCD {dcd_code} version {version}")
            published = (
                await session.execute(
                    select(DcdVersion.version, DcdVersion.major, DcdVersion.minor, DcdVersion.patch).where(
                        DcdVersion.dcd_code == dcd_code, DcdVersion.state == VersionState.PUBLISHED.value
                    )
                )
            ).all()
            current = max(published, key=lambda v: (v.major, v.minor, v.patch)).version if published else None
            before = VersionState(row.state)
            check_move(dcd_code=dcd_code, version=version, now=before, to=state, current=current)
            if before != state:
                await session.execute(
                    update(DcdVersion)
                    .where(DcdVersion.id == row.id)
                    .values(state=state.value, state_changed_at=utcnow(), state_changed_by=actor)
                )
        self._forget(dcd_code)
        return before

    async def every_version(self) -> list[DcdVersion]:
        """Every version of every DCD, without its workbook (the console's catalogue)."""
        async with self.db.system_session() as session:
            rows = (
                await session.execute(
                    select(
                        DcdVersion.dcd_code,
                        DcdVersion.version,
                        DcdVersion.major,
                        DcdVersion.minor,
                        DcdVersion.patch,
                        DcdVersion.state,
                        DcdVersion.imported_at,
                        DcdVersion.imported_by,
                        DcdVersion.state_changed_at,
                        DcdVersion.state_changed_by,
                    )
                )
            ).all()
        return [DcdVersion(**row._mapping) for row in rows]

    async def invalidated_by(self, dcd_code: str, major: int) -> list[Invalidated]:
        """Registrations a version of ``major`` invalidates: those of the DCD at a lower
        major still to be edited or sent, counted per organisation and status."""
        older = lower_majors(((r.version, r.major) for r in await self.versions(dcd_code)), major)
        if not older:
            return []
        async with self.db.system_session() as session:
            rows = (
                await session.execute(
                    select(Registration.organisation_id, Registration.status, func.count())
                    .where(
                        Registration.dcd_code == dcd_code,
                        self.db.among(Registration.dcd_version, older),
                        self.db.among(Registration.status, sorted(s.value for s in INVALIDATED_STATUSES)),
                    )
                    .group_by(Registration.organisation_id, Registration.status)
                    .order_by(Registration.organisation_id, Registration.status)
                )
            ).all()
        return [Invalidated(org, status, int(n)) for org, status, n in rows]

    async def import_shipped(self) -> int:
        """Import every workbook shipped in ``hdhub.registrations.dcds``; returns how many were new.
        Every registrations pod does this as it starts: one at a time, so that replicas
        starting together do not insert the same versions at once."""
        count = 0
        folder = resources.files("hdhub.registrations") / "dcds"
        async with self.db.exclusive("registrations:import-shipped"):
            for item in sorted(folder.iterdir(), key=lambda p: p.name):
                if item.name.endswith(".xlsx"):
                    _, new = await self.import_workbook(item.read_bytes(), actor="hdhub (shipped)")
                    count += new
        return count

    async def _entry(self, row: DcdVersion) -> CatalogueEntry:
        key = (row.dcd_code, row.version)
        entry = self._entries.get(key)
        if entry is None:
            definition = read_workbook(row.workbook)
            entry = CatalogueEntry(definition, compile_dcd(definition))
            self._entries[key] = entry
        return entry

    async def get(self, dcd_code: str, version: str | None = None) -> CatalogueEntry:
        """A DCD version (the newest when ``version`` is not named or ``latest``); 404
        problem when unknown."""
        version = pinned(version)
        if version:
            entry = self._entries.get((dcd_code, version))
            if entry is not None:
                return entry
        else:
            newest = self._newest.get(dcd_code)
            if newest is not None and time.monotonic() - newest[0] < NEWEST_TTL_SECONDS:
                return newest[1]
        async with self.db.system_session() as session:
            query = select(DcdVersion.version, DcdVersion.major, DcdVersion.minor, DcdVersion.patch).where(
                DcdVersion.dcd_code == dcd_code
            )
            if version:
                query = query.where(DcdVersion.version == version)
            else:
                query = query.where(DcdVersion.state == VersionState.PUBLISHED.value)
            found = (await session.execute(query)).all()
            if not found:
                if version:
                    raise not_found(f"DCD {dcd_code} version {version}")
                raise not_found(f"DCD {dcd_code}")
            chosen = max(found, key=lambda v: (v.major, v.minor, v.patch)).version
            entry = self._entries.get((dcd_code, chosen))
            if entry is None:
                row = (
                    await session.execute(
                        select(DcdVersion).where(
                            DcdVersion.dcd_code == dcd_code, DcdVersion.version == chosen
                        )
                    )
                ).scalar_one()
                entry = await self._entry(row)
        if not version:
            self._newest[dcd_code] = (time.monotonic(), entry)
        return entry

    async def require_current(self, entry: CatalogueEntry) -> None:
        """Refuse work on a version that is not published (a draft, a retired one), or that
        a newer MAJOR version superseded (DOMAIN.md: a major version invalidates draft and
        submitted registrations; a minor one does not)."""
        state = await self.state_of(entry)
        if state is not VersionState.PUBLISHED:
            raise not_in_effect(entry, state)
        newest = await self.get(entry.definition.dcd_code)
        if newest.definition.version.major > entry.definition.version.major:
            raise superseded(entry, newest)

    async def superseded_by(self, dcd_code: str, version: str) -> str | None:
        """The newest version when it is of a higher major than ``version``, else None."""
        newest = await self.get(dcd_code)
        major = int(version.split(".", 1)[0])
        return newest.version if newest.definition.version.major > major else None

    async def find(self, ref: str, version: str | None = None) -> CatalogueEntry:
        """A DCD version of the DCD named by its code or its number (v2 clients send numbers)."""
        return await self.get(await self.resolve_dcd(ref), version)

    async def newest(self) -> list[CatalogueEntry]:
        """The newest version of every DCD that has one."""
        return [await self.get(d.code) for _, dcds in await self.tree() for d, versions in dcds if versions]

    async def granted_dcds(self, principal: Principal, organisation_id: str) -> set[str] | None:
        """The codes of the DCDs of the registries granted to ``principal`` in the
        organisation; None when grants do not bound it there (every registry)."""
        granted = principal.registries_in(organisation_id)
        if granted is None:
            return None
        return {e.definition.dcd_code for e in await self.newest() if e.definition.project_code in granted}

    async def resolve_dcd(self, ref: str) -> str:
        """A DCD code from a code or a DCD number (v2 clients send numeric ids)."""
        if ref in self._codes:
            return self._codes[ref]
        async with self.db.system_session() as session:
            if ref.isascii() and ref.isdigit():  # not "²", which isdigit() too
                number = int(ref)
                # Beyond the column's range no DCD has it (and the database would refuse the query).
                dcd = (
                    None
                    if number > MAX_INT
                    else (await session.execute(select(Dcd).where(Dcd.number == number))).scalar_one_or_none()
                )
            else:
                dcd = await session.get(Dcd, ref)
        if dcd is None:
            raise not_found(f"DCD {ref}")
        self._codes[ref] = dcd.code  # code and number of a DCD never change
        return dcd.code

    async def tree(
        self, *, every_state: bool = False
    ) -> list[tuple[Project, list[tuple[Dcd, list[DcdVersion]]]]]:
        """Projects with their DCDs and published versions (newest first), for menus and
        listings; those without a published version are left out. ``every_state``: drafts
        and retired versions too, every DCD and project (the console)."""
        async with self.db.system_session() as session:
            projects = list((await session.execute(select(Project).order_by(Project.code))).scalars())
            dcds = list((await session.execute(select(Dcd).order_by(Dcd.number))).scalars())
            versions = list(
                (
                    await session.execute(
                        select(
                            DcdVersion.id,
                            DcdVersion.dcd_code,
                            DcdVersion.version,
                            DcdVersion.major,
                            DcdVersion.minor,
                            DcdVersion.patch,
                            DcdVersion.imported_at,
                            DcdVersion.state,
                        )
                    )
                ).all()
            )
        if not every_state:
            versions = [v for v in versions if v.state == VersionState.PUBLISHED.value]
        out = []
        for p in projects:
            items = []
            for d in dcds:
                if d.project_code == p.code:
                    vs = sorted(
                        (v for v in versions if v.dcd_code == d.code),
                        key=lambda v: (v.major, v.minor, v.patch),
                        reverse=True,
                    )
                    if vs or every_state:
                        items.append((d, vs))
            if items or every_state:
                out.append((p, items))
        return out  # type: ignore[return-value]


def _read(data: bytes) -> DcdDefinition:
    """A workbook's definition; 422 naming sheet, row and column of each problem in it."""
    try:
        return read_workbook(data)
    except WorkbookError as exc:
        raise Problem(
            422,
            "invalid-workbook",
            "The workbook is not a valid DCD",
            errors=[
                FieldProblem(
                    field=f"{p.sheet}!{p.column or ''}{p.row or ''}", rule="workbook", message=p.message
                )
                for p in exc.problems
            ],
            # The same, each with its sheet, row and column apart (the console's table).
            extra={"problems": [p.to_json() for p in exc.problems]},
        ) from exc


async def _file_project_and_dcd(session: AsyncSession, definition: DcdDefinition) -> None:
    """The project and the DCD a new version belongs to: created on their first version,
    the DCD's titles those of its newest import; 409 when the DCD's code is another
    project's or number's."""
    if await session.get(Project, definition.project_code) is None:
        session.add(
            Project(
                code=definition.project_code,
                abbreviation=definition.project_abbreviation,
                titles=dict(definition.project_titles),
            )
        )
    dcd = await session.get(Dcd, definition.dcd_code)
    if dcd is None:
        holder = (
            await session.execute(select(Dcd.code).where(Dcd.number == definition.dcd_number))
        ).scalar_one_or_none()
        if holder is not None:  # the v2 API finds a DCD by its number: it must be one DCD's
            raise Problem(
                409,
                "dcd-number-taken",
                "This DCD number belongs to another DCD",
                f"dcd_number {definition.dcd_number} is {holder}'s; give {definition.dcd_code} a number of its own "
                "(sheet settings, column dcd_number).",
            )
        session.add(
            Dcd(
                code=definition.dcd_code,
                project_code=definition.project_code,
                number=definition.dcd_number,
                titles=dict(definition.dcd_titles),
            )
        )
    elif dcd.project_code != definition.project_code or dcd.number != definition.dcd_number:
        raise Problem(409, "dcd-conflict", "This DCD code belongs to another project or number")
    else:
        dcd.titles = dict(definition.dcd_titles)


def field_named(definition: DcdDefinition, name: str) -> Field:
    """A field by its technical name, or by the name of one instance of a repeated field
    (``DT_PCI_2``); 404 problem when the DCD version has none."""
    try:
        return definition.field(name)
    except KeyError:
        pass
    try:
        return definition.resolve_flat_name(name)[0]
    except KeyError:
        raise not_found(f"Field {name}") from None


def codelist_named(entries: Sequence[CatalogueEntry], ref: str) -> tuple[Codelist, DcdDefinition]:
    """A code list by its name or its number (v2's ``code-list-id``), in the DCD versions
    given, with the definition holding it; 404 problem when none has it, 422 when they hold
    different lists under that name."""
    found = [
        (c, e.definition)
        for e in entries
        for c in e.definition.codelists.values()
        if ref in (c.name, str(codelist_id(c.name)))
    ]
    if not found:
        raise not_found(f"Code list {ref}")
    if any(c != found[0][0] for c, _ in found[1:]):
        raise Problem(
            422,
            "codelist-ambiguous",
            "DCDs hold different code lists under this id",
            "Name the DCD with dcd-id (and dcd-version-id).",
        )
    return found[0]


def superseded(old: CatalogueEntry, new: CatalogueEntry) -> Problem:
    code = old.definition.dcd_code
    return Problem(
        409,
        "dcd-version-superseded",
        "This DCD version was superseded by a new major version",
        f"{code} {old.version} was superseded by {new.version}: registrations must now follow {new.version}. "
        f"Save the registration again with dcd_version {new.version}.",
        extra={"dcd": code, "version": old.version, "current_version": new.version},
    )


def not_in_effect(entry: CatalogueEntry, state: VersionState) -> Problem:
    code = entry.definition.dcd_code
    if state is VersionState.DRAFT:
        title, detail = (
            "This DCD version is not published",
            f"{code} {entry.version} is a draft under review.",
        )
    else:
        title, detail = "This DCD version was retired", f"{code} {entry.version} was retired."
    return Problem(
        409,
        f"dcd-version-{state.value}",
        title,
        f"{detail} Registrations follow a published version.",
        extra={"dcd": code, "version": entry.version, "state": state.value},
    )
