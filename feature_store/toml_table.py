"""Reading a checked TOML file: one table at a time, every error naming ``file: key``.

:func:`read_toml` reads and parses the file, naming it when it cannot be read or parsed.

:class:`TomlTable` is the common core of the feature policy reader (feature_store.policy_toml)
and the training configuration reader (training.config_toml): it knows where it is in the file
(``tiers.levels[2]``), which keys were read (so that :meth:`TomlTable.finish` can reject the
unknown ones, a typo must never be silently ignored) and the type checks every getter starts
with. Subclasses choose the error type and add the getters (defaults, ranges, choices) their
file format needs, with their own wording.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from feature_store.errors import ConfigError

T = TypeVar("T")


def read_toml(
    path: Path, what: str, error_type: type[ConfigError] = ConfigError
) -> tuple[dict[str, Any], bytes]:
    """The parsed TOML file at ``path`` and its bytes. ``error_type`` names the file when it
    cannot be read (``cannot read the <what>``) or is not valid TOML (or not UTF-8)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error_type(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc
    try:
        return tomllib.loads(raw.decode("utf-8")), raw
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error_type(f"{path}: not valid TOML: {exc}") from exc


class TomlTable:
    """A TOML table being read: typed look-ups whose errors name ``file: key``, and a final
    check that no unknown key is left over."""

    #: The exception raised for every problem (a subclass's own ConfigError).
    error_type: ClassVar[type[ConfigError]] = ConfigError

    def __init__(self, path: Path, prefix: str, data: object) -> None:
        self.path = path
        self.prefix = prefix
        if not isinstance(data, Mapping):
            raise self.error("", f"must be a table, got {type(data).__name__}")
        self.data: Mapping[str, object] = data
        #: keys whose value was read
        self.used: set[str] = set()
        #: keys a getter asked for, present or not
        self.asked: set[str] = set()

    def where(self, key: str) -> str:
        """The dotted path of ``key`` in the file (``<root>`` for the top level)."""
        if not key:
            return self.prefix or "<root>"
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, message: str) -> ConfigError:
        return self.error_type(f"{self.path}: {self.where(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def names(self) -> list[str]:
        """The keys present (for tables whose keys are data: tiers, tags, params)."""
        return list(self.data)

    def raw(self, key: str) -> object:
        """The value of ``key`` as parsed, marked as read."""
        self.used.add(key)
        return self.data[key]

    def child(self, where: str, data: object) -> Self:
        """A table nested at ``where`` (a dotted path, from :meth:`where`)."""
        return type(self)(self.path, where, data)

    def tables(self, key: str) -> list[Self] | None:
        """The array of tables ``[[key]]``; None when the key is absent."""
        self.asked.add(key)
        if key not in self.data:
            return None
        value = self.raw(key)
        if not isinstance(value, list):
            raise self.error(key, "must be an array of tables ([[...]])")
        return [self.child(f"{self.where(key)}[{i}]", v) for i, v in enumerate(value)]

    def default(self, key: str, default: T | None, kind: str) -> T:
        """``default`` for the absent ``key``; an error when there is none (a required
        ``kind``)."""
        if default is None:
            raise self.error(key, f"missing required {kind}")
        return default

    def finite_number(self, key: str) -> int | float | None:
        """The value of ``key`` when it is a finite number (as written: int or float); None
        when the key is absent."""
        self.asked.add(key)
        if key not in self.data:
            return None
        value = self.raw(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.error(key, f"must be a finite number, got {value!r}")
        return value

    def whole_number(self, key: str) -> int | None:
        """The value of ``key`` when it is an integer; None when the key is absent."""
        self.asked.add(key)
        if key not in self.data:
            return None
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        return value

    def text(self, key: str, *, allow_empty: bool = False) -> str | None:
        """The value of ``key`` when it is a string (not blank unless ``allow_empty``); None
        when the key is absent."""
        self.asked.add(key)
        if key not in self.data:
            return None
        value = self.raw(key)
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value

    def known_keys(self) -> str:
        """How the error for an unknown key lists the keys that are known here."""
        return f"known here: {', '.join(sorted(self.used)) or 'none'}"

    def finish(self) -> None:
        """Raise for the first key (in sorted order) that nothing read."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], f"unknown key ({self.known_keys()})")


__all__ = ["TomlTable", "read_toml"]
