"""The snapshot manifest fields the online store uses (docs/feature_snapshot.md), read and
checked once: what the materializer loads and what the audience tables record."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from feature_store.errors import DataError
from feature_store.online.store import parse_rfm_bounds, parse_value_model
from feature_store.snapshot import FORMAT_VERSION

SUPPORTED_FORMAT_VERSION: Final[int] = FORMAT_VERSION


@dataclass(frozen=True, slots=True)
class SnapshotManifest:
    """The manifest.json fields the online store uses (docs/feature_snapshot.md)."""

    folder: Path
    as_of: datetime
    created_at: str
    source_fingerprint: str
    policy_sha256: str
    policy_path: str
    rfm_score_bounds: str
    #: the manifest's ``value_model`` entry as JSON text
    value_model: str
    members_file: Path
    recent_file: Path
    #: the snapshot's tier ladder, lowest first (audiences code tiers by it)
    tiers: tuple[str, ...] = ()
    items_file: Path | None = None


def read_manifest(folder: Path) -> SnapshotManifest:
    """DataError naming the file and key when the snapshot folder cannot be used."""
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(
            f"{folder}: not a feature snapshot (no manifest.json); build one with "
            "`recsys features build`"
        ) from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise DataError(f"{path}: must hold a JSON object")

    def need(key: str) -> object:
        if key not in manifest:
            raise DataError(f"{path}: missing key {key!r}")
        return manifest[key]

    version = need("format_version")
    if version != SUPPORTED_FORMAT_VERSION:
        raise DataError(
            f"{path}: format_version {version!r} is not supported (this online store reads "
            f"{SUPPORTED_FORMAT_VERSION}); rebuild the snapshot with this version of recsys"
        )
    try:
        as_of = datetime.fromisoformat(str(need("as_of")))
    except ValueError as exc:
        raise DataError(f"{path}: as_of {manifest['as_of']!r} is not a date (YYYY-MM-DD)") from exc
    try:
        parse_rfm_bounds(need("rfm_score_bounds"))
        value_model = json.dumps(need("value_model"), separators=(",", ":"))
        parse_value_model(value_model)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from exc
    files = manifest.get("files")
    if not isinstance(files, dict):
        files = {}
    members = str(files.get("members", "members.parquet"))
    recent = str(files.get("recent_purchases", "recent_purchases.parquet"))
    items = folder / str(files.get("items", "items.parquet"))
    tiers = manifest.get("tiers")
    return SnapshotManifest(
        folder=folder,
        as_of=as_of,
        created_at=str(need("created_at")),
        source_fingerprint=str(need("source_fingerprint")),
        policy_sha256=str(need("policy_sha256")),
        policy_path=str(manifest.get("policy_path", "")),
        rfm_score_bounds=json.dumps(manifest["rfm_score_bounds"], separators=(",", ":")),
        value_model=value_model,
        members_file=folder / members,
        recent_file=folder / recent,
        tiers=tuple(str(t) for t in tiers) if isinstance(tiers, list) else (),
        items_file=items if items.is_file() else None,
    )


__all__ = ["SUPPORTED_FORMAT_VERSION", "SnapshotManifest", "read_manifest"]
