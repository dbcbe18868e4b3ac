"""``rcvlab reproduce``: the papers' analyses from one config, resumable, with a report.

:func:`load_config` reads a packaged config (:func:`list_configs`) or a YAML file;
:func:`reproduce` runs its steps (:data:`STEP_KINDS`) into one run folder.
"""

from rcvlab.reproduce.config import (
    ConfigError,
    ReproConfig,
    check_inputs,
    check_layers,
    config_text,
    list_configs,
    load_config,
    parse_override,
)
from rcvlab.reproduce.published import compare, published_numbers
from rcvlab.reproduce.report import write_reproduce_report
from rcvlab.reproduce.runner import ReproduceResult, StepRecord, reproduce, step_results
from rcvlab.reproduce.steps import STEP_KINDS, PruneResult

__all__ = [
    "STEP_KINDS",
    "ConfigError",
    "PruneResult",
    "ReproConfig",
    "ReproduceResult",
    "StepRecord",
    "check_inputs",
    "check_layers",
    "compare",
    "config_text",
    "list_configs",
    "load_config",
    "parse_override",
    "published_numbers",
    "reproduce",
    "step_results",
    "write_reproduce_report",
]
