"""The reader of a training configuration file's tables (see training.config).

:class:`ConfigTable` adds to :class:`~feature_store.toml_table.TomlTable` the getters the training
sections use: optional sub-tables (an absent table reads as empty, so every default applies),
numbers with bounds (a negative weight is named as such), integers, lists, booleans, strings with
choices and dates. Every error is a :class:`ConfigError` naming the file and the key
(``weights.tier.golden: unknown tier``).
"""

from __future__ import annotations

from datetime import date

from feature_store.errors import ConfigError as FeatureConfigError
from feature_store.toml_table import TomlTable


class ConfigError(FeatureConfigError):
    """A training configuration is malformed; the message names the file and the key."""


class ConfigTable(TomlTable):
    """A TOML table being read: typed getters whose errors name ``file: key``, and a final
    check that no unknown key is left."""

    error_type = ConfigError

    def table(self, key: str) -> ConfigTable:
        """The sub-table ``key`` (an empty one when absent)."""
        self.asked.add(key)
        value = self.raw(key) if key in self.data else {}
        return self.child(self.where(key), value)

    def table_list(self, key: str) -> list[ConfigTable]:
        """The array of tables ``[[key]]`` (empty when absent)."""
        tables = self.tables(key)
        return tables if tables is not None else []

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        value = self.finite_number(key)
        if value is None:
            return self.default(key, default, "number")
        if minimum is not None and value < minimum:
            what = "negative weights are not allowed" if minimum == 0 else f"must be >= {minimum:g}"
            raise self.error(key, f"{value!r}: {what}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"{value!r}: must be <= {maximum:g}")
        return float(value)

    def integer(self, key: str, default: int | None = None, *, minimum: int | None = None) -> int:
        value = self.whole_number(key)
        if value is None:
            return self.default(key, default, "integer")
        if minimum is not None and value < minimum:
            raise self.error(key, f"{value}: must be >= {minimum}")
        return value

    def integer_list(self, key: str, default: tuple[int, ...], *, minimum: int) -> tuple[int, ...]:
        self.asked.add(key)
        if key not in self.data:
            return default
        value = self.raw(key)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            raise self.error(key, f"must be a non-empty list of integers, got {value!r}")
        if min(value) < minimum:
            raise self.error(key, f"values must be >= {minimum}, got {value!r}")
        return tuple(value)

    def string_list(
        self, key: str, default: tuple[str, ...], *, choices: tuple[str, ...] | None = None
    ) -> tuple[str, ...]:
        self.asked.add(key)
        if key not in self.data:
            return default
        value = self.raw(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a non-empty list of strings, got {value!r}")
        if choices is not None:
            for i, v in enumerate(value):
                if v not in choices:
                    raise self.error(f"{key}[{i}]", f"{v!r} is not one of {', '.join(choices)}")
        return tuple(value)

    def boolean(self, key: str, default: bool) -> bool:
        self.asked.add(key)
        if key not in self.data:
            return default
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def string(
        self,
        key: str,
        default: str | None = None,
        *,
        choices: tuple[str, ...] | None = None,
        allow_empty: bool = False,
    ) -> str:
        value = self.text(key, allow_empty=allow_empty)
        if value is None:
            return self.default(key, default, "string")
        if choices is not None and value not in choices:
            raise self.error(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if key in self.data else None

    def optional_date(self, key: str) -> date | None:
        self.asked.add(key)
        if key not in self.data:
            return None
        value = self.raw(key)
        if isinstance(value, date) and not hasattr(value, "hour"):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise self.error(key, f"must be a date (YYYY-MM-DD), got {value!r}")

    def known_keys(self) -> str:
        return f"valid keys here: {', '.join(sorted(self.asked)) or 'none'}"


__all__ = ["ConfigError", "ConfigTable"]
