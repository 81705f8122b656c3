"""THE ranking kernel: candidates -> blend scores -> rules (as data) -> fallback fill, vectorized
over a batch (:mod:`engine.ranking.kernel`). The rules are in :mod:`engine.ranking.lists`, the
item catalogue they read in :mod:`engine.ranking.catalog`, the candidate lanes in
:mod:`engine.ranking.lanes`, the request fields every caller parses in
:mod:`engine.ranking.query`, the source names in :mod:`engine.ranking.sources`.
"""
