"""The reader of a feature policy file's tables (see feature_store.policy).

:class:`PolicySection` adds to :class:`~feature_store.toml_table.TomlTable` the getters the policy
sections use: required and optional sub-tables, numbers and integers with bounds, strings with
choices and lists of names. Every error is a :class:`~feature_store.errors.ConfigError` naming
the file and the key (``tiers.levels[2].min_spend``).
"""

from __future__ import annotations

from feature_store.toml_table import TomlTable


class PolicySection(TomlTable):
    """A policy table being read: typed getters that name ``file: key`` on error, and a check
    that no unknown key is left over."""

    def section(self, key: str) -> PolicySection:
        if key not in self.data:
            raise self.error(key, "missing required table")
        return self.child(self.where(key), self.raw(key))

    def optional_section(self, key: str) -> PolicySection | None:
        return self.section(key) if key in self.data else None

    def table_list(self, key: str, *, required: bool = True) -> list[PolicySection]:
        tables = self.tables(key)
        if tables is None:
            if required:
                raise self.error(key, "missing (give it as [[...]] tables)")
            return []
        return tables

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        above: float | None = None,
    ) -> float:
        value = self.optional_number(key, minimum=minimum, above=above)
        return self.default(key, default, "number") if value is None else value

    def optional_number(
        self, key: str, *, minimum: float | None = None, above: float | None = None
    ) -> float | None:
        value = self.finite_number(key)
        if value is None:
            return None
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum:g}, got {value!r}")
        if above is not None and value <= above:
            raise self.error(key, f"must be > {above:g}, got {value!r}")
        return float(value)

    def integer(
        self,
        key: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = self.whole_number(key)
        if value is None:
            return self.default(key, default, "integer")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be <= {maximum}, got {value}")
        return value

    def optional_integer(self, key: str, *, minimum: int = 0) -> int | None:
        return self.integer(key, minimum=minimum) if key in self.data else None

    def string(
        self, key: str, default: str | None = None, *, choices: tuple[str, ...] | None = None
    ) -> str:
        value = self.text(key)
        if value is None:
            return self.default(key, default, "string")
        if choices is not None and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def string_list(self, key: str) -> tuple[str, ...]:
        value = self.raw(key) if key in self.data else None
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v for v in value)
        ):
            raise self.error(key, f"must be a non-empty list of strings, got {value!r}")
        if len(set(value)) != len(value):
            raise self.error(key, f"has duplicates: {value!r}")
        return tuple(value)


__all__ = ["PolicySection"]
