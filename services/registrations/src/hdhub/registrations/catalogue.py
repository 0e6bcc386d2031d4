"""The DCD catalogue: imported workbooks, and their compiled form cached per version.

A DCD version is immutable once imported (re-importing the same version with other
content is refused), so a compiled version can be cached for the life of the process on
every replica without invalidation.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from importlib import resources

from sqlalchemy import select

from hdhub.common.db import Database
from hdhub.common.errors import FieldProblem, Problem, not_found
from hdhub.common.limits import MAX_INT
from hdhub.registrations.domain.dcd import DcdDefinition
from hdhub.registrations.domain.validation import CompiledDcd, compile_dcd
from hdhub.registrations.domain.xlsform import WorkbookError, read_workbook
from hdhub.registrations.store import Dcd, DcdVersion, Project

NEWEST_TTL_SECONDS = 30.0


@dataclass(frozen=True)
class CatalogueEntry:
    definition: DcdDefinition
    compiled: CompiledDcd
    version_id: str

    @property
    def version(self) -> str:
        return str(self.definition.version)


class Catalogue:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._entries: dict[tuple[str, str], CatalogueEntry] = {}
        # The newest version per DCD, re-read after NEWEST_TTL_SECONDS so that a version
        # imported through another replica is seen soon; imports here refresh it at once.
        self._newest: dict[str, tuple[float, CatalogueEntry]] = {}
        self._codes: dict[str, str] = {}

    async def import_workbook(self, data: bytes, *, actor: str) -> tuple[CatalogueEntry, bool]:
        """Import one workbook; returns the entry and whether it was new.

        Raises a 422 problem naming sheet, row and column of every problem in the workbook,
        and 409 when the version exists with different content.
        """
        try:
            definition = read_workbook(data)
        except WorkbookError as exc:
            raise Problem(
                422,
                "invalid-workbook",
                "The workbook is not a valid DCD",
                errors=[
                    FieldProblem(
                        field=f"{p.sheet}!{p.column or ''}{p.row or ''}",
                        rule="workbook",
                        message=p.message,
                    )
                    for p in exc.problems
                ],
            ) from exc
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
                    and read_workbook(existing.workbook).fingerprint != definition.fingerprint
                ):
                    raise Problem(
                        409,
                        "dcd-version-exists",
                        "This DCD version exists with other content",
                        f"{definition.dcd_code} {version} is already imported; publish a new version instead.",
                    )
                return await self._entry(existing), False
            project = await session.get(Project, definition.project_code)
            if project is None:
                session.add(
                    Project(
                        code=definition.project_code,
                        abbreviation=definition.project_abbreviation,
                        titles=dict(definition.project_titles),
                    )
                )
            dcd = await session.get(Dcd, definition.dcd_code)
            if dcd is None:
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
            row = DcdVersion(
                dcd_code=definition.dcd_code,
                version=version,
                major=definition.version.major,
                minor=definition.version.minor,
                patch=definition.version.patch,
                workbook=data,
                sha256=digest,
                imported_by=actor,
            )
            session.add(row)
            await session.flush()
            entry = CatalogueEntry(definition, compile_dcd(definition), row.id)
        self._entries[(definition.dcd_code, version)] = entry
        self._newest.pop(definition.dcd_code, None)
        return entry, True

    async def import_shipped(self) -> int:
        """Import every workbook shipped in ``hdhub.registrations.dcds``; returns how many were new."""
        count = 0
        folder = resources.files("hdhub.registrations") / "dcds"
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
            entry = CatalogueEntry(definition, compile_dcd(definition), row.id)
            self._entries[key] = entry
        return entry

    async def get(self, dcd_code: str, version: str | None = None) -> CatalogueEntry:
        """A DCD version (the newest when ``version`` is empty); 404 problem when unknown."""
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
        """Refuse work on a version that a newer MAJOR version superseded (DOMAIN.md: a major
        version invalidates draft and submitted registrations; a minor one does not)."""
        newest = await self.get(entry.definition.dcd_code)
        if newest.definition.version.major > entry.definition.version.major:
            raise superseded(entry, newest)

    async def superseded_by(self, dcd_code: str, version: str) -> str | None:
        """The newest version when it is of a higher major than ``version``, else None."""
        newest = await self.get(dcd_code)
        major = int(version.split(".", 1)[0])
        return newest.version if newest.definition.version.major > major else None

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

    async def tree(self) -> list[tuple[Project, list[tuple[Dcd, list[DcdVersion]]]]]:
        """Projects with their DCDs and versions (newest first), for menus and listings."""
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
                        )
                    )
                ).all()
            )
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
                    items.append((d, vs))
            out.append((p, items))
        return out  # type: ignore[return-value]


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
