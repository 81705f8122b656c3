"""Importers: turn real-world source files into canonical datasets.

Each importer reads one kind of source, keeps or rejects every row with a reason (first rule
broken), and writes the three tables plus ``rejects/import_rejects.csv`` and
``import_report.json`` into an output folder. See docs/data_import.md.
"""

from feature_store.importers.common import ImportReport, ImportResult
from feature_store.importers.csv_log import build_csv_log, import_csv_log
from feature_store.importers.online_retail import build_online_retail, import_online_retail

__all__ = [
    "ImportReport",
    "ImportResult",
    "build_csv_log",
    "build_online_retail",
    "import_csv_log",
    "import_online_retail",
]
