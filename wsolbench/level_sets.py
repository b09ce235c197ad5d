"""Former home of :mod:`wsolbench.metrics.level_sets` (level-set box scores), still importable."""

from wsolbench.metrics.level_sets import level_scores, threshold_scores

__all__ = ["level_scores", "threshold_scores"]
