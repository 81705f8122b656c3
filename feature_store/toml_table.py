"""Reading a configuration TOML file: :func:`read_toml` reads and parses it, naming the file
when it cannot be read or parsed. The tables are then checked by the file's pydantic models
(feature_store.config_model)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from feature_store.errors import ConfigError


def read_toml(
    path: Path, what: str, error_type: type[ConfigError] = ConfigError
) -> tuple[dict[str, Any], bytes]:
    """The parsed TOML file at ``path`` and its bytes. A ConfigError (``error_type``, a
    subclass where a caller wants one) names the file when it cannot be read (``cannot read
    the <what>``) or is not valid TOML (or not UTF-8)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error_type(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc
    try:
        return tomllib.loads(raw.decode("utf-8")), raw
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error_type(f"{path}: not valid TOML: {exc}") from exc


__all__ = ["read_toml"]
