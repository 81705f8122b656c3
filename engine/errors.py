"""Errors the engine raises on purpose. Serving and the CLI map them to HTTP problems / exit codes.

Every message names the thing at fault (file, id, array, argument) and, where it can, says what
to do about it.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(EngineError, ValueError):
    """Arguments are inconsistent: wrong shape, dtype, value range or a missing requirement."""


class BundleError(EngineError):
    """A model bundle cannot be written or read: missing file, bad manifest, inconsistent arrays."""


class IdMapError(EngineError):
    """An id map cannot be built or loaded (duplicate ids, wrong dtype, corrupt file)."""


class DuplicateIdError(IdMapError):
    """The ids given to build a map are not unique."""


class UnknownIdError(IdMapError, LookupError):
    """Ids were looked up that the map does not hold.

    ``missing`` holds (up to a few of) the unknown ids and ``count`` how many there were.
    """

    def __init__(self, message: str, *, missing: tuple[str, ...], count: int) -> None:
        super().__init__(message)
        self.missing = missing
        self.count = count
