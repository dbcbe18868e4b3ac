"""Orchestration above the analyses: the demos chain analyses, pruning, figures and reports.

Analyses (:mod:`rcvlab.analyses`) compute; pipelines run several of them and write run folders.
"""

from rcvlab.pipelines.demo import DemoResult, encoding_demo, run_demo
from rcvlab.pipelines.histo import HistoChainResult, run_histo_demo
from rcvlab.pipelines.reuse import ReuseChainResult, run_reuse_demo

__all__ = [
    "DemoResult",
    "HistoChainResult",
    "ReuseChainResult",
    "encoding_demo",
    "run_demo",
    "run_histo_demo",
    "run_reuse_demo",
]
