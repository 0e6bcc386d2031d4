"""The one shape of every list under /api: a page.

    {"items": [...], "total": 120, "limit": 50, "offset": 50, "next": null}

``total`` counts every item the filters match; ``limit`` and ``offset`` are the window
asked for (``offset``: how many items come before this page); ``next`` is set on lists
paged by key (the audit log, members), where items arrive while a client pages: send it
back as ``after`` for the following page; it is null on the last page and on every list
paged by ``offset``. A generated client gets one page type per item type, all alike.

HD4DP v2's lists under /proxy/api keep the shapes healthdata.be documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Generic, Self, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.limits import MAX_INT

__all__ = ["After", "Limit", "Offset", "Page", "count"]

ItemT = TypeVar("ItemT")

#: How many items a page holds at most (each route gives its default).
Limit = Annotated[int, Query(ge=1, le=1000, description="The most items the page holds")]
#: Where a page starts; bounded like every integer a client sends (see limits.MAX_INT).
Offset = Annotated[int, Query(ge=0, le=MAX_INT, description="How many items to skip")]
#: Where a keyset-paged list goes on: the ``next`` of the page before.
After = Annotated[
    str | None,
    Query(min_length=1, max_length=320, description="The `next` of the page before: the page after it"),
]


class Page(BaseModel, Generic[ItemT]):
    """A page of a list: its items, how many the list holds, the window, and (keyset
    lists) where the next page starts."""

    # Every member is always sent: a generated client finds them all required.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    items: list[ItemT] = Field(description="This page's items, in the list's order")
    total: int = Field(ge=0, description="How many items the list holds in all (with the filters asked)")
    limit: int = Field(ge=1, description="The most items a page holds (as asked, or the default)")
    offset: int = Field(ge=0, description="How many items of the list come before this page")
    next: str | None = Field(
        default=None,
        description="Lists paged by key: send it as `after` for the following page. "
        "Null on the last page, and on lists paged by `offset`.",
    )

    @classmethod
    def window(cls, items: Sequence[ItemT], *, limit: int, offset: int) -> Self:
        """The page of a list read whole (a short one: members, clients, versions)."""
        return cls(items=list(items[offset : offset + limit]), total=len(items), limit=limit, offset=offset)


async def count(session: AsyncSession, query: Select[Any]) -> int:
    """How many rows ``query`` gives, whatever its order and window: a page's ``total``."""
    bare = query.order_by(None).limit(None).offset(None).subquery()
    return int((await session.execute(select(func.count()).select_from(bare))).scalar_one())
