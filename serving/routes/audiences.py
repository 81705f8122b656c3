"""``/v1/audiences``: campaign audiences for marketers (role ``marketer``).

Create an audience from a definition, read its summary, page through its members, stream it as
CSV and mark it sent (which records its members for the contact frequency cap). The work is in
:mod:`serving.audiences`; an audience is kept in Redis for ``RECSYS_AUDIENCE_TTL_DAYS``.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from engine.audience import DefinitionError
from serving.audience_schemas import (
    DEFAULT_PAGE,
    DEFINITION_REF,
    AudienceDefinition,
    AudienceIdPath,
    AudienceOut,
    AudiencePage,
    DefinitionBody,
    LimitQuery,
    OffsetQuery,
    SentOut,
    read_definition,
)
from serving.audience_store import CSV_HEADER, EXPORT_CHUNK_ROWS
from serving.audiences import AudienceService
from serving.deps import AppState, Campaigns, CurrentModel, State
from serving.errors import BadRequestError
from serving.model import ServingModel
from serving.routes._problems import SECURITY, problems, secured

router = APIRouter(prefix="/v1/audiences", tags=["audiences"])


def _service(state: AppState) -> AudienceService:
    return state.audiences


#: Request bodies this router validates itself; serving/app.py adds their schemas to the document.
BODY_MODELS = (AudienceDefinition,)


def _create(service: AudienceService, body: Any, model: ServingModel) -> AudienceOut:
    document = read_definition(body)  # the shape; the engine checks the rules
    try:
        return AudienceOut.model_validate(service.create(document, model))
    except DefinitionError as exc:
        raise BadRequestError(
            str(exc), extra={"errors": [{"field": exc.field, "message": exc.message}]}
        ) from exc


@router.post(
    "",
    status_code=201,
    response_model=AudienceOut,
    summary="Create an audience",
    responses=problems(400, 401, 403, 409, 422, 503),
    openapi_extra={
        "security": SECURITY,
        "requestBody": {"content": {"application/json": {"schema": {"$ref": DEFINITION_REF}}}},
    },
)
async def create(
    body: DefinitionBody, caller: Campaigns, state: State, model: CurrentModel
) -> AudienceOut:
    """Rank the members for the definition's seed under its filters, exclusions and size, and
    keep the list (docs/audiences.md). Returns its size, counts, breakdowns and the best 20.

    An invalid definition is a 422 whose ``errors[0].field`` is the document's path of the
    culprit (``filters.tiers[0]``, ``size.top_n``, an unknown key such as ``filtres``). Besides the
    schema, the definition must name tiers, lifecycle stages and segments the snapshot knows, a
    seed the model knows something of, a tag not both in ``all`` and ``none``,
    ``points.min <= points.max`` and ``joined.after < joined.before``."""
    return await anyio.to_thread.run_sync(_create, _service(state), body, model)


@router.get(
    "/{audience_id}",
    response_model=AudienceOut,
    summary="An audience",
    **secured(404, 422, 503),
)
def get(audience_id: AudienceIdPath, caller: Campaigns, state: State) -> AudienceOut:
    """The summary of an audience, and whether it was marked sent."""
    return AudienceOut.model_validate(_service(state).get(audience_id))


@router.get(
    "/{audience_id}/members",
    response_model=AudiencePage,
    summary="A page of an audience's members",
    **secured(404, 422, 503),
)
def members(
    audience_id: AudienceIdPath,
    caller: Campaigns,
    state: State,
    offset: OffsetQuery = 0,
    limit: LimitQuery = DEFAULT_PAGE,
) -> AudiencePage:
    """Members ranked ``offset + 1`` to ``offset + limit``, best first; ``next_offset`` is the
    offset of the next page (null after the last)."""
    return AudiencePage.model_validate(_service(state).page(audience_id, offset, limit))


@router.get(
    "/{audience_id}/export.csv",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": f"CSV with the header {','.join(CSV_HEADER)}, best member first",
            "content": {"text/csv": {}},
        },
        **problems(401, 403, 404, 422, 503),
    },
    openapi_extra={"security": SECURITY},
    summary="Export an audience as CSV",
)
def export(audience_id: AudienceIdPath, caller: Campaigns, state: State) -> StreamingResponse:
    """The whole audience as CSV (member_id, score, rank, percentile, tier, segment; no
    personal data beyond member ids), streamed in chunks: the same rows as all its pages. With
    a holdout, only the treatment group: the members to contact."""
    chunks = _service(state).export(audience_id, EXPORT_CHUNK_ROWS)
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{audience_id}.csv"'},
    )


@router.get(
    "/{audience_id}/control.csv",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": f"CSV with the header {','.join(CSV_HEADER)}, best member first",
            "content": {"text/csv": {}},
        },
        **problems(401, 403, 404, 422, 503),
    },
    openapi_extra={"security": SECURITY},
    summary="Export an audience's control group as CSV",
)
def control(audience_id: AudienceIdPath, caller: Campaigns, state: State) -> StreamingResponse:
    """The control group of an audience with a holdout (members kept out of the send, to
    measure its lift; docs/campaigns.md), as CSV like export.csv. 404 without a holdout."""
    chunks = _service(state).export(audience_id, EXPORT_CHUNK_ROWS, control=True)
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{audience_id}.control.csv"'},
    )


@router.post(
    "/{audience_id}/sent",
    response_model=SentOut,
    summary="Mark an audience sent",
    **secured(404, 422, 503),
)
def sent(
    audience_id: AudienceIdPath, caller: Campaigns, state: State, model: CurrentModel
) -> SentOut:
    """Record the audience's members (its treatment group) as contacted now, for the contact
    frequency cap (``exclude.contacted_within_days``), and the campaign (id = the audience id;
    definition, seed, send time, both groups, model version) in the campaign database, where
    ``GET /v1/campaigns/{id}/report`` measures its lift. Idempotent: marking it again changes
    nothing and returns the first record (``recorded: false``)."""
    return SentOut.model_validate(_service(state).mark_sent(audience_id, model))
