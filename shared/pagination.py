"""Page-number pagination shared by every list route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageParams:
    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


async def _page_params(
    page: Annotated[int, Query(ge=1, le=100_000, description="1-based page number")] = 1,
    limit: Annotated[int, Query(ge=1, le=200, description="items per page")] = 50,
) -> PageParams:
    return PageParams(page, limit)


Paging = Annotated[PageParams, Depends(_page_params)]


class Pagination(BaseModel):
    total_count: int
    page: int
    limit: int
    max_page: int


class Page(BaseModel, Generic[T]):
    items: list[T]
    pagination: Pagination


async def paginate(
    session: AsyncSession, query: Select[Any], params: PageParams
) -> tuple[list[Any], Pagination]:
    total = int(
        await session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    )
    rows = list((await session.scalars(query.offset(params.offset).limit(params.limit))).all())
    max_page = max(1, -(-total // params.limit))
    return rows, Pagination(
        total_count=total, page=params.page, limit=params.limit, max_page=max_page
    )
