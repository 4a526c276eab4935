"""Input types and rules shared by every endpoint, so hostile input is refused by class:

* integers a PostgreSQL column can hold (:data:`Int8`, :data:`Int4`, and
  :func:`bound_integer_params` for every integer parameter that names no bound);
* :class:`Patch`, the base of partial updates: a field may be left out, but an explicit
  ``null`` for a field that has no "nothing" value is refused with 422 instead of reaching a
  ``NOT NULL`` column.

Database errors the input still causes are mapped to 4xx in :mod:`gateways.http.errors`.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar

import annotated_types
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from aggregates.commands import Strict

#: What PostgreSQL's ``bigint`` / ``integer`` columns hold.
INT8_MIN, INT8_MAX = -(2**63), 2**63 - 1
INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
#: An integer a ``bigint`` column (and asyncpg's encoder) accepts; use for parameters.
Int8 = Annotated[int, Field(ge=INT8_MIN, le=INT8_MAX)]
#: An integer an ``integer`` column accepts.
Int4 = Annotated[int, Field(ge=INT4_MIN, le=INT4_MAX)]


def bound_integer_params(app: FastAPI) -> None:
    """Give every integer query / path / header parameter without an explicit bound the
    bounds of PostgreSQL's ``bigint``.

    Why at the app and not per endpoint: a parameter typed plain ``int`` reaches asyncpg,
    which cannot encode 575791557587124682752 and used to answer 500. Bounding them all here
    refuses such values with the ordinary 422 ``validation_error`` *before* any query runs,
    puts the bounds into the OpenAPI document (so generated clients and schemathesis know
    them), and covers routes added later. Explicit ``ge`` / ``le`` (or :data:`Int8` /
    :data:`Int4`) are kept. Call after every router is included, before the first OpenAPI
    document is generated."""
    import fastapi.routing

    # FastAPI >= 0.16x keeps included routers as contexts with their own (combined)
    # dependants; visit those and the original routes (the fields are shared objects, and
    # bounding one twice changes nothing).
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = [*app.routes, *(contexts(app.routes) if contexts is not None else ())]
    for route in routes:
        for candidate in (route, getattr(route, "original_route", None)):
            dependant = getattr(candidate, "dependant", None)
            if dependant is None:
                continue
            for dep in _dependants(dependant):
                for param in (*dep.query_params, *dep.path_params, *dep.header_params):
                    _bound(param)


def _dependants(dependant: Dependant) -> Iterable[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _bound(param: Any) -> None:
    info = param.field_info
    args = typing.get_args(info.annotation) if typing.get_origin(info.annotation) in (
        typing.Union, types.UnionType) else (info.annotation,)
    if int not in args or bool in args:
        return
    kinds = {type(m) for m in info.metadata}
    added = False
    if not kinds & {annotated_types.Ge, annotated_types.Gt}:
        info.metadata.append(annotated_types.Ge(INT8_MIN))
        added = True
    if not kinds & {annotated_types.Le, annotated_types.Lt}:
        info.metadata.append(annotated_types.Le(INT8_MAX))
        added = True
    if added:
        param.__post_init__()  # rebuild FastAPI's validator from the amended field info


class Patch(Strict):
    """A partial update: leave a field out to keep it; ``null`` only where :attr:`nullable`
    says it means something (e.g. "no department").

    Why: fields are typed ``X | None`` so that they may be omitted, which also let an explicit
    ``null`` through to the store — ``{"disabled": null}`` became an UPDATE … SET disabled =
    NULL and a 500 (NotNullViolation). The JSON schema drops ``null`` from the fields that
    refuse it, so the documentation says the same thing as the validation."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _no_explicit_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable:
            raise PydanticCustomError(
                "null_not_allowed", "may be left out, but not null"
            )
        return value

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> Any:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        for name, prop in target.get("properties", {}).items():
            options = prop.get("anyOf")
            if name in cls.nullable or not options:
                continue
            rest = [o for o in options if o.get("type") != "null"]
            if len(rest) == 1:
                del prop["anyOf"]
                prop.update(rest[0])
            else:
                prop["anyOf"] = rest
            if prop.get("default", 0) is None:
                del prop["default"]
        return schema
