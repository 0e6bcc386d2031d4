"""Form pages: the owner's refusal shown as GOV.UK's error summary plus the message at
each field it names, in the person's language."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

from hdhub.common.errors import Problem
from hdhub.common.grpc import channel, problem_from_rpc_error
from hdhub.portal.pages.web import Page, problem_messages
from hdhub.proto.identity.v1 import identity_pb2_grpc as pb_grpc


def identity() -> pb_grpc.IdentityServiceAsyncStub:
    """Identity's gRPC stub; calls pass the person's token (``Page.metadata``)."""
    return pb_grpc.IdentityServiceStub(channel("identity"))


@dataclass
class FormErrors:
    title: str = ""
    detail: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    slug: str = ""

    def __bool__(self) -> bool:
        return bool(self.title or self.fields)


def form_errors(page: Page, exc: Exception) -> FormErrors:
    """A refusal as the form shows it; anything but a 4xx problem is raised again."""
    problem = problem_from_rpc_error(exc) if isinstance(exc, grpc.aio.AioRpcError) else exc
    if not isinstance(problem, Problem) or not 400 <= problem.status < 500 or problem.status in (401, 404):
        raise problem if isinstance(problem, Problem) else exc
    title, detail, fields = problem_messages(page, problem)
    return FormErrors(title, detail, fields, problem.slug)


def values(form: dict[str, str], *names: str) -> dict[str, Any]:
    return {n: form.get(n, "").strip() for n in names}
