"""The MLflow pyfunc flavour of a model bundle: predict on member ids returns recommendations.

:meth:`training.run_logging.TrackedRun.log_bundle` packages a bundle folder as an MLflow "model
from code": the model's code is :data:`LOADER_SOURCE` (it builds :class:`MemberRecsModel`), the
bundle is the model artifact ``bundle``. Nothing is pickled; loading needs this package
installed. Recommendations go through :class:`engine.bundle_recommender.BundleRecommender`, the
ranking kernel serving uses (tier eligibility, availability, the diversity cap and the fallback
fill included; each member at their tier as of the bundle's snapshot).

Input: a DataFrame with a ``member_id`` column (or a list / array / Series of member ids).
Params, the fields of the API's query (:class:`engine.ranking.query.ListQuery`): ``k`` (default
10), ``exclude_purchased`` (default false; true: only items the member never bought, the "new"
variant), ``category``, ``exclude`` (comma-separated item ids), ``promote``,
``promote_category`` and ``promote_share``; empty text means not given. Members the model does
not know get the popular fallback.
Output: one row per recommendation with the columns ``member_id``,
``rank`` (1-based), ``item_id``, ``score``, ``source`` (which part of the blend produced it),
members in input order, ranks ascending.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel, PythonModelContext
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from pydantic import ValidationError

from engine.bundle_recommender import BundleRecommender
from engine.ranking.query import DEFAULT_PROMOTE_SHARE, ListQuery
from training.tracking_store import BUNDLE_ARTIFACT

MEMBER_ID = "member_id"
OUTPUT_COLUMNS = ("member_id", "rank", "item_id", "score", "source")
DEFAULT_K = 10
#: text params of the query, empty when not given
_TEXT_PARAMS = ("category", "exclude", "promote", "promote_category")

#: The model's code file (MLflow "model from code"), written into the model at logging time.
LOADER_SOURCE = """\
# Written by training.tracking.log_bundle: MLflow loads the model by running this file.
from mlflow.models import set_model

from training.pyfunc_model import MemberRecsModel

set_model(MemberRecsModel())
"""


def signature() -> ModelSignature:
    """Input one string column of member ids, params ``k`` and ``exclude_purchased``, output
    the recommendation rows."""
    return ModelSignature(
        # unnamed: a list or Series of ids is accepted as well as a frame with member_id
        inputs=Schema([ColSpec("string")]),
        outputs=Schema(
            [
                ColSpec("string", "member_id"),
                ColSpec("long", "rank"),
                ColSpec("string", "item_id"),
                ColSpec("float", "score"),
                ColSpec("string", "source"),
            ]
        ),
        params=ParamSchema(
            [
                ParamSpec("k", "long", DEFAULT_K),
                ParamSpec("exclude_purchased", "boolean", False),
                *(ParamSpec(name, "string", "") for name in _TEXT_PARAMS),
                ParamSpec("promote_share", "double", DEFAULT_PROMOTE_SHARE),
            ]
        ),
    )


def input_example(bundle_dir: Path, rows: int = 3) -> pd.DataFrame:
    """A few member ids of the bundle, saved with the model as its input example."""
    ids = np.load(bundle_dir / "member_ids.npy", mmap_mode="r", allow_pickle=False)
    return pd.DataFrame({MEMBER_ID: np.asarray(ids[:rows]).astype(str).tolist()})


def member_ids_of(model_input: Any) -> np.ndarray[Any, np.dtype[np.str_]]:
    """Member ids from a DataFrame (its ``member_id`` column), Series, list or array.

    MLflow hands a list or Series over as a one-column frame whose column is named ``0``.
    """
    if isinstance(model_input, pd.DataFrame):
        if MEMBER_ID in model_input.columns:
            values = model_input[MEMBER_ID].to_numpy()
        elif list(model_input.columns) == [0]:
            values = model_input[0].to_numpy()
        else:
            raise _bad_input(
                f"predict input needs a {MEMBER_ID!r} column; got {list(model_input.columns)}"
            )
    elif isinstance(model_input, pd.Series):
        values = model_input.to_numpy()
    else:
        values = np.asarray(model_input)
    if values.ndim != 1:
        raise _bad_input(
            f"predict input must be one column of member ids, got shape {values.shape}"
        )
    if values.dtype.kind == "O" and pd.isna(values).any():
        raise _bad_input("predict input holds missing member ids; drop or fill them first")
    return np.asarray(values, dtype=np.str_)


def query_of(params: dict[str, Any]) -> ListQuery:
    """The predict params as the API's query (empty text and None: not given)."""
    given = {name: value for name, value in params.items() if value is not None and value != ""}
    try:
        return ListQuery.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(
            f"param {'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise _bad_input(problems) from exc


def _bad_input(message: str) -> MlflowException:
    error: MlflowException = MlflowException.invalid_parameter_value(message)
    return error


class MemberRecsModel(PythonModel):
    """Recommendations from the bundle artifact, through the serving ranker."""

    def __init__(self) -> None:
        self._recommender: BundleRecommender | None = None

    def load_context(self, context: PythonModelContext) -> None:
        self._recommender = BundleRecommender.from_path(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(
        self,
        context: Any,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        if self._recommender is None:
            raise MlflowException("the model is not loaded; load it with mlflow.pyfunc.load_model")
        query = query_of(params or {})
        members = member_ids_of(model_input)
        recommendations = self._recommender.recommend(
            members, query.k, exclude_purchased=bool(query.exclude_purchased), query=query
        )
        return pd.DataFrame(recommendations.long_format(), columns=list(OUTPUT_COLUMNS))
