"""The snapshot folder on disk: its files, its manifest, writing it atomically and opening it.

A snapshot (docs/feature_snapshot.md) is a folder with four Parquet tables (:data:`FILES`) and
``manifest.json`` (format version, as-of date, source fingerprint, policy, row counts, ...).
:func:`write_snapshot` writes :class:`FeatureTables` into a temporary sibling folder and renames
it into place; :func:`open_snapshot` checks the manifest and the files and returns a
:class:`Snapshot`. feature_store.offline builds the tables.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

import polars as pl

from feature_store.errors import DataError
from feature_store.policy import FeaturePolicy

#: Version of the folder layout and manifest (open_snapshot accepts only this one).
FORMAT_VERSION: Final[int] = 2
MANIFEST: Final[str] = "manifest.json"
MEMBERS_FILE: Final[str] = "members.parquet"
ITEMS_FILE: Final[str] = "items.parquet"
TIER_HISTORY_FILE: Final[str] = "tier_history.parquet"
RECENT_PURCHASES_FILE: Final[str] = "recent_purchases.parquet"
#: The file of each logical table.
FILES: Final[dict[str, str]] = {
    "members": MEMBERS_FILE,
    "items": ITEMS_FILE,
    "tier_history": TIER_HISTORY_FILE,
    "recent_purchases": RECENT_PURCHASES_FILE,
}


@dataclass(frozen=True, slots=True)
class TierAgreement:
    """How often the imported CRM tier equals the tier the policy computes."""

    crm_members: int
    agreeing: int

    @property
    def rate(self) -> float | None:
        return self.agreeing / self.crm_members if self.crm_members else None


@dataclass(frozen=True, slots=True)
class FeatureTables:
    """Everything a snapshot holds, in memory."""

    as_of: date
    members: pl.DataFrame
    items: pl.DataFrame
    tier_history: pl.DataFrame
    recent_purchases: pl.DataFrame
    rfm_score_bounds: dict[str, list[float | None]]
    #: the member-value model: ``params`` (feature_store.value.ValueParams as JSON, or null)
    #: and ``note`` (why there is no model, or null)
    value_model: dict[str, object]
    tier_agreement: TierAgreement
    #: purchase rows before as_of of members who joined before as_of
    purchases_used: int

    @property
    def row_counts(self) -> dict[str, int]:
        """Rows of each table, by logical table name."""
        return {
            "members": self.members.height,
            "items": self.items.height,
            "tier_history": self.tier_history.height,
            "recent_purchases": self.recent_purchases.height,
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot folder on disk and its manifest."""

    path: Path
    manifest: dict[str, object]

    @property
    def as_of(self) -> date:
        return date.fromisoformat(str(self.manifest["as_of"]))

    @property
    def tiers(self) -> tuple[str, ...]:
        tiers = self.manifest["tiers"]
        return tuple(str(t) for t in tiers) if isinstance(tiers, list) else ()

    def file(self, name: str) -> Path:
        """Path of a logical table: members, items, tier_history, recent_purchases."""
        if name not in FILES:
            raise KeyError(f"no snapshot table {name!r}; tables: {', '.join(FILES)}")
        return self.path / FILES[name]

    def scan(self, name: str) -> pl.LazyFrame:
        return pl.scan_parquet(self.file(name))

    def read(self, name: str) -> pl.DataFrame:
        return pl.read_parquet(self.file(name))


def source_fingerprint(files: list[Path]) -> str:
    """SHA-256 over the files' names and bytes, in the given order."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(b"\0")
        with path.open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return f"sha256:{digest.hexdigest()}"


def snapshot_manifest(
    tables: FeatureTables,
    policy: FeaturePolicy,
    *,
    fingerprint: str,
    source: dict[str, object],
    rejected_rows: int,
) -> dict[str, object]:
    """The manifest of a snapshot of ``tables`` (docs/feature_snapshot.md): the format, the
    as-of date, where the data (``fingerprint``, ``source``) and the policy came from, the row
    counts and what the build found."""
    return {
        "format_version": FORMAT_VERSION,
        "as_of": tables.as_of.isoformat(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source_fingerprint": fingerprint,
        "source": source,
        "policy_sha256": policy.sha256,
        "policy_path": str(policy.source.resolve()),
        "tiers": list(policy.tiers.names),
        "row_counts": tables.row_counts,
        "rejected_rows": rejected_rows,
        "purchases_used": tables.purchases_used,
        "tier_agreement": {
            "crm_members": tables.tier_agreement.crm_members,
            "agreeing": tables.tier_agreement.agreeing,
            "rate": tables.tier_agreement.rate,
        },
        "rfm_score_bounds": tables.rfm_score_bounds,
        "value_model": tables.value_model,
        "value_policy": {
            "clv_months": policy.value.clv_months,
            "monthly_discount": policy.value.monthly_discount,
            "at_risk_below": policy.value.at_risk_below,
        },
        "files": dict(FILES),
    }


def check_target(out: Path) -> None:
    """DataError unless ``out`` is absent, an empty folder or a snapshot (which may be replaced)."""
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())
    ):
        raise DataError(
            f"{out}: exists and is not a feature snapshot; choose an empty or new folder for --out"
        )


def write_snapshot(tables: FeatureTables, manifest: dict[str, object], out: Path) -> None:
    """Write the four tables and the manifest to a temporary sibling, then move it to ``out``
    (replacing a previous snapshot there)."""
    check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    frames = {
        "members": tables.members,
        "items": tables.items,
        "tier_history": tables.tier_history,
        "recent_purchases": tables.recent_purchases,
    }
    for name, frame in frames.items():
        frame.write_parquet(
            tmp / FILES[name], compression="zstd", compression_level=1, statistics=True
        )
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def open_snapshot(path: Path) -> Snapshot:
    """Read a snapshot's manifest and check that its files are there (DataError if not)."""
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise DataError(
            f"{path}: not a feature snapshot (no {MANIFEST}); build one with `recsys features build`"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{manifest_path}: cannot be read: {exc}") from exc
    if not isinstance(manifest, dict):
        raise DataError(f"{manifest_path}: must hold a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(
            f"{manifest_path}: format_version {version!r} is not supported (expected {FORMAT_VERSION}); rebuild the snapshot"
        )
    missing = [f for f in FILES.values() if not (path / f).is_file()]
    if missing:
        raise DataError(f"{path}: snapshot is incomplete, missing {', '.join(missing)}; rebuild it")
    return Snapshot(path=path, manifest=manifest)


__all__ = [
    "FILES",
    "FORMAT_VERSION",
    "ITEMS_FILE",
    "MANIFEST",
    "MEMBERS_FILE",
    "RECENT_PURCHASES_FILE",
    "TIER_HISTORY_FILE",
    "FeatureTables",
    "Snapshot",
    "TierAgreement",
    "check_target",
    "open_snapshot",
    "snapshot_manifest",
    "source_fingerprint",
    "write_snapshot",
]
