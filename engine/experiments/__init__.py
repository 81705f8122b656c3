"""Online experiments: champion vs challenger assignment, attribution of purchases to served
lists, and their report (:mod:`engine.experiments.assignment`, ...)."""
