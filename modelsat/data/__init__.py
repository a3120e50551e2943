"""Routing data: routing data directories (questions, per-model outcomes, optional cost) in the shared schema.

- Loading: `load_routing_data` validates a directory and returns a `RoutingData` with an outcome matrix `[n_questions, n_models]`
  (`modelsat.data._routing_data`).
- The contract: `modelsat.data.schema` lists every file and column (README, "Routing data");
  `validate_routing_data` reports every problem of a directory, `routing_data_stats` its models, benchmarks, best single model,
  oracle and random expectation.
- Bringing one's own outcomes: `lm_eval_models` (lm-evaluation-harness `--log_samples` logs) and
  `mmlu_pro_models` (the public MMLU-Pro result archives, `fetch_mmlu_pro_archives` downloads them) read sources
  into `ModelOutcomes`; `import_outcomes` merges them into a routing data directory with checks and writes it atomically.

Everything here is light (numpy, pyarrow, stdlib): no torch, no Ray.
"""

from modelsat.data._routing_data import (
    OUTCOME_COLUMNS,
    QUESTION_COLUMNS,
    SPLITS,
    RoutingData,
    load_routing_data,
    missing_routing_data_error,
    prompt_hash,
    recorded_responses,
)
from modelsat.data.lmeval import lm_eval_models, parse_prompt_fields
from modelsat.data.merge import MergeReport, ModelOutcomes, Outcome, QuestionRecord
from modelsat.data.mmlu_pro import fetch_mmlu_pro, fetch_mmlu_pro_archives, mmlu_pro_models
from modelsat.data.stats import routing_data_stats, stats_markdown
from modelsat.data.validate import Problem, validate_routing_data
from modelsat.data.writer import import_outcomes

__all__ = [
    "OUTCOME_COLUMNS",
    "QUESTION_COLUMNS",
    "SPLITS",
    "MergeReport",
    "ModelOutcomes",
    "Outcome",
    "Problem",
    "QuestionRecord",
    "RoutingData",
    "fetch_mmlu_pro",
    "fetch_mmlu_pro_archives",
    "import_outcomes",
    "lm_eval_models",
    "load_routing_data",
    "missing_routing_data_error",
    "mmlu_pro_models",
    "parse_prompt_fields",
    "prompt_hash",
    "recorded_responses",
    "stats_markdown",
    "validate_routing_data",
    "routing_data_stats",
]
