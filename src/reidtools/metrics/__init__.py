"""Metrics: ReID ranking metrics (CMC, mAP, mINP) under each benchmark protocol, k-reciprocal
re-ranking, and CMC plots."""

from reidtools.metrics.protocols import PROTOCOLS, Meta, evaluate
from reidtools.metrics.ranking import rank_block, summarize

__all__ = ["PROTOCOLS", "Meta", "evaluate", "rank_block", "summarize"]
