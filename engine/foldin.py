"""ALS fold-in: a member's vector re-estimated from their history, without retraining.

Implicit-feedback ALS (Hu, Koren & Volinsky 2008) fixes the item vectors ``Y`` and solves, for
one member with confidences ``r_i`` on the items ``i`` of their history (``c_i = alpha * r_i``)::

    x = (Y^T Y + lambda I + sum_i (c_i - 1) y_i y_i^T)^-1  sum_i c_i y_i

which is exactly the member step of ALS (the same equation as implicit's
``recalculate_user``), so a member folded in from their training history gets back (up to the
solver's tolerance) the vector training gave them, and one folded in after new purchases moves
toward the vectors of what they bought. ``Y^T Y + lambda I`` is computed once per model; a
fold-in then costs one ``d x d`` solve plus a product over the member's history items.

For models not trained by ALS (BPR, LightFM) the same least-squares estimate is a reasonable
approximation of "a member like the ones who bought these items".
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInputError

FloatArray = npt.NDArray[np.float32]


class FoldIn:
    """Member vectors from histories against fixed item vectors (see the module docstring).

    Args:
        item_vectors: ``n_items x d`` float32.
        regularization: ALS ``lambda``.
        alpha: ALS confidence multiplier (``c = alpha * r``).
    """

    def __init__(
        self, item_vectors: npt.ArrayLike, *, regularization: float = 0.01, alpha: float = 1.0
    ) -> None:
        items = np.asarray(item_vectors, dtype=np.float32)
        if items.ndim != 2 or items.shape[0] == 0:
            raise InvalidInputError(
                f"fold-in: item vectors must be a non-empty 2-D array, got shape {items.shape}"
            )
        if not (np.isfinite(regularization) and regularization >= 0):
            raise InvalidInputError(f"fold-in: regularization must be >= 0, got {regularization}")
        if not (np.isfinite(alpha) and alpha > 0):
            raise InvalidInputError(f"fold-in: alpha must be > 0, got {alpha}")
        self._items = items
        self.alpha = float(alpha)
        self.regularization = float(regularization)
        y = items.astype(np.float64)
        self._gram = y.T @ y + self.regularization * np.eye(items.shape[1])

    @property
    def dim(self) -> int:
        return int(self._items.shape[1])

    def vector(self, items: npt.ArrayLike, confidences: npt.ArrayLike) -> FloatArray:
        """The member vector for a history of dense ``items`` with confidences ``r`` (>= 0).

        Repeated items are summed; items with a total confidence of 0 are ignored. An empty
        history gives the zero vector.
        """
        ids = np.asarray(items, dtype=np.int64).ravel()
        r = np.asarray(confidences, dtype=np.float64).ravel()
        if ids.shape != r.shape:
            raise InvalidInputError(
                f"fold-in: {ids.size} items but {r.size} confidences; give one per item"
            )
        n_items = self._items.shape[0]
        if ids.size and (ids.min() < 0 or ids.max() >= n_items):
            raise InvalidInputError(f"fold-in: item ids must lie in 0..{n_items - 1}")
        if not np.isfinite(r).all() or (r.size and r.min() < 0):
            raise InvalidInputError("fold-in: confidences must be finite and >= 0")
        unique, inverse = np.unique(ids, return_inverse=True)
        total = np.bincount(inverse, weights=r, minlength=unique.size)
        positive = total > 0
        unique, total = unique[positive], total[positive]
        if unique.size == 0:
            return np.zeros(self.dim, dtype=np.float32)
        y = self._items[unique].astype(np.float64)
        c = self.alpha * total
        a = self._gram + y.T @ ((c - 1.0)[:, None] * y)
        b = y.T @ c
        try:
            x = np.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            x = np.linalg.lstsq(a, b, rcond=None)[0]
        return np.ascontiguousarray(x, dtype=np.float32)


__all__ = ["FoldIn"]
