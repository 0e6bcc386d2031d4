"""RFC 9457 problem details: one exception type for every REST error hdhub answers.

Handlers turn :class:`Problem` (and FastAPI's own validation errors) into
``application/problem+json``; nothing else ever reaches the client, so a stack trace
cannot leak.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("hdhub.errors")


class FieldError(Protocol):
    """A broken rule of one field, as validation reports it (``hdhub.registrations``' engine)
    and as it is stored with a record: the field as sent, its path in the form, the rule
    and the message in the reader's language."""

    @property
    def field(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def message(self) -> str: ...


def field_error_json(error: FieldError) -> dict[str, str]:
    """A field error in the one shape every answer, store and message carries it in:
    ``field``, ``path`` (empty when it has none), ``rule``, ``message``."""
    return {"field": error.field, "path": error.path or "", "rule": error.rule, "message": error.message}


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with one field of the input: where, which rule, what to do."""

    field: str
    rule: str
    message: str
    path: str | None = None
    row: int | None = None

    @classmethod
    def of(cls, error: FieldError) -> FieldProblem:
        """The problem answering a field error of validation."""
        return cls(field=error.field, rule=error.rule, message=error.message, path=error.path)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "rule": self.rule, "message": self.message}
        if self.path is not None:
            out["path"] = self.path
        if self.row is not None:
            out["row"] = self.row
        return out


@dataclass
class Problem(Exception):
    """An error answer. ``slug`` becomes the stable ``type`` URI ``/problems/<slug>``."""

    status: int
    slug: str
    title: str
    detail: str | None = None
    errors: Sequence[FieldProblem] = ()
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    #: Every slug answered so far, with its status and title: /problems/<slug> describes
    #: those missing from hdhub.common.problem_pages.CATALOGUE too.
    seen: ClassVar[dict[str, tuple[int, str]]] = {}

    def __post_init__(self) -> None:
        Exception.__init__(self, self.title)
        Problem.seen.setdefault(self.slug, (self.status, self.title))

    @property
    def type(self) -> str:
        return f"/problems/{self.slug}"

    def body(self, instance: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            out["detail"] = self.detail
        if instance:
            out["instance"] = instance
        if self.errors:
            out["errors"] = [e.as_dict() for e in self.errors]
        out.update(self.extra)
        return out


def not_found(what: str) -> Problem:
    return Problem(404, "not-found", f"{what} not found")


def forbidden(detail: str = "You may not do this for this organisation.") -> Problem:
    return Problem(403, "forbidden", "Forbidden", detail)


def unauthorized(detail: str = "A valid bearer token is required.") -> Problem:
    return Problem(
        401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="hdhub"'}
    )


def organisation_required() -> Problem:
    """400 for a call that must name the organisation it acts for and names none."""
    return Problem(400, "organisation-required", "organisation_id is required")


def conflict(slug: str, title: str, detail: str | None = None) -> Problem:
    return Problem(409, slug, title, detail)


def invalid(
    errors: Sequence[FieldProblem], title: str = "The input is not valid", slug: str = "validation"
) -> Problem:
    return Problem(422, slug, title, f"{len(errors)} problem(s); see errors.", errors=errors)
