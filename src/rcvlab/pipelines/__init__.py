"""Orchestration above the analyses: the demos chain analyses, pruning, figures and reports.

Analyses (:mod:`rcvlab.analyses`) compute; pipelines run several of them and write run folders.
"""

from rcvlab.pipelines.demo import DemoResult, encoding_demo, run_demo
from rcvlab.pipelines.histo import HistoChainResult, run_histo_demo

__all__ = ["DemoResult", "HistoChainResult", "encoding_demo", "run_demo", "run_histo_demo"]
