"""Dependencies of the routes, as ``Annotated`` aliases so that signatures read like prose::

def recommendations(member_id: MemberIdPath, caller: Storefront, model: CurrentModel, ...)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from engine.experiments.assignment import Variant, variant_of
from feature_store.policy import FeaturePolicy
from serving.audiences import AudienceService
from serving.batcher import RecommendationBatcher
from serving.campaigns import CampaignService
from serving.errors import AuthenticationError, PermissionDeniedError
from serving.metrics import Metrics
from serving.model import ServingModel
from serving.online import OnlineGateway
from serving.security import ApiKey, KeyRing, Permission, Role
from serving.settings import Settings, is_loopback
from serving.state import ModelHolder


@dataclass(frozen=True, slots=True)
class AppState:
    """Everything the app holds, created in ``create_app`` / its lifespan."""

    settings: Settings
    policy: FeaturePolicy
    holder: ModelHolder
    gateway: OnlineGateway
    metrics: Metrics
    keyring: KeyRing
    batcher: RecommendationBatcher
    audiences: AudienceService
    campaigns: CampaignService
    #: the experiment's challenger (RECSYS_CHALLENGER_URI), None without an experiment
    challenger: ModelHolder | None = None

    def holders(self) -> list[ModelHolder]:
        """The champion's holder, then the challenger's when there is one."""
        return [self.holder] if self.challenger is None else [self.holder, self.challenger]

    def holder_of(self, role: str) -> ModelHolder | None:
        return self.holder if role == "champion" else self.challenger

    def model_for(self, member_id: str) -> tuple[Variant, ServingModel]:
        """The variant a member sees and its model (engine.experiments.assignment): always the
        champion without an experiment."""
        challenger = self.challenger
        if challenger is None:
            return "champion", self.holder.current
        variant = variant_of(self.settings.experiment, member_id, self.settings.challenger_percent)
        return variant, (challenger.current if variant == "challenger" else self.holder.current)


#: The caller in open mode (no keys configured): loopback clients may do everything.
OPEN_CALLER = ApiKey(role=Role.ADMIN, sha256="0" * 64, name="open-mode")


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.recsys
    return state


State = Annotated[AppState, Depends(get_state)]


async def get_model(state: State) -> ServingModel:
    """The model of this request: taken once, so the request finishes on it even if a reload
    switches models meanwhile."""
    return state.holder.current


CurrentModel = Annotated[ServingModel, Depends(get_model)]


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The API key a request presents: ``Authorization: Bearer KEY``, else ``X-API-Key``."""
    header = headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("x-api-key") or None


def authenticate(request: Request, state: AppState, permission: Permission | None) -> ApiKey:
    """The caller's key, checked for ``permission`` (None: any valid key)."""
    host = request.client.host if request.client is not None else ""
    return caller_key(request.headers, host, state, permission)


def caller_key(
    headers: Mapping[str, str], host: str, state: AppState, permission: Permission | None
) -> ApiKey:
    """The key of a caller at ``host`` presenting ``headers``, checked for ``permission``: the
    one key check of the routes and the fast path (serving/fastpath.py)."""
    if state.settings.open_mode:
        if not is_loopback(host):
            raise PermissionDeniedError(
                "the service runs in open mode (no API keys configured) and serves loopback "
                "clients only"
            )
        return OPEN_CALLER
    token = presented_token(headers)
    if token is None:
        raise AuthenticationError(
            "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
        )
    key = state.keyring.find(token)
    if key is None:
        raise AuthenticationError("the API key is not valid")
    if permission is not None and not key.allows(permission):
        raise PermissionDeniedError(
            f"API key {key.name!r} has role {key.role.value!r}, which may not access "
            f"{permission.value}; use a key with a role that may"
        )
    return key


def requires(permission: Permission | None) -> Callable[[Request, AppState], Awaitable[ApiKey]]:
    async def dependency(request: Request, state: State) -> ApiKey:
        return authenticate(request, state, permission)

    return dependency


Storefront = Annotated[ApiKey, Depends(requires(Permission.RECOMMEND))]
Marketer = Annotated[ApiKey, Depends(requires(Permission.PROFILES))]
Ingest = Annotated[ApiKey, Depends(requires(Permission.EVENTS))]
Admin = Annotated[ApiKey, Depends(requires(Permission.MODELS))]
Campaigns = Annotated[ApiKey, Depends(requires(Permission.AUDIENCES))]
AnyCaller = Annotated[ApiKey, Depends(requires(None))]

__all__ = [
    "Admin",
    "AnyCaller",
    "AppState",
    "Campaigns",
    "CurrentModel",
    "Ingest",
    "Marketer",
    "State",
    "Storefront",
    "authenticate",
    "get_state",
    "presented_token",
]
