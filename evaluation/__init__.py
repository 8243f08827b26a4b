"""The evaluation harness: policies x protocol trials x seeds x visual domains, stored episode by episode,
reported as success rates with confidence intervals and as MMRV / Pearson r against the real world.

    from evaluation import tiny_config, run_evaluation, write_report
    config = tiny_config()
    run_evaluation(config, "runs/tiny", TINY_EXECUTION)  # resumable: rerun to continue
    write_report("runs/tiny")
"""

from .config import (
    DOMAINS,
    EDITED,
    EDITED_COMPOSITED,
    TINY_EXECUTION,
    UNEDITED,
    EvalConfig,
    ExecutionOptions,
    PolicySpec,
    full_config,
    graded_stand_ins,
    published_rt1_policies,
    rt1_policies,
    select_trials,
    tiny_config,
)
from .report import Report, build_report, write_report
from .results import ConfigMismatchError, EpisodeResult, LostDatabaseError, ResultStore
from .runner import RunSummary, run_evaluation

__all__ = [
    "DOMAINS",
    "EDITED",
    "EDITED_COMPOSITED",
    "TINY_EXECUTION",
    "UNEDITED",
    "ConfigMismatchError",
    "EpisodeResult",
    "EvalConfig",
    "ExecutionOptions",
    "LostDatabaseError",
    "PolicySpec",
    "Report",
    "ResultStore",
    "RunSummary",
    "build_report",
    "full_config",
    "graded_stand_ins",
    "published_rt1_policies",
    "rt1_policies",
    "run_evaluation",
    "select_trials",
    "tiny_config",
    "write_report",
]
