"""Routing data: zoo directories (questions, per-model outcomes, optional cost) in the shared schema.

- Loading: `load_zoo` validates a directory and returns a `Zoo` with an outcome matrix `[n_questions, n_models]`
  (`modelsat.data._zoo`).
- The contract: `modelsat.data.schema` lists every file and column (README, "Routing data");
  `validate_zoo` reports every problem of a directory, `zoo_stats` its models, benchmarks, best single model,
  oracle and random expectation.
- Bringing one's own outcomes: `lm_eval_models` (lm-evaluation-harness `--log_samples` logs) and
  `mmlu_pro_models` (the public MMLU-Pro result archives, `fetch_mmlu_pro_archives` downloads them) read sources
  into `ModelOutcomes`; `import_outcomes` merges them into a zoo directory with checks and writes it atomically.

Everything here is light (numpy, pyarrow, stdlib): no torch, no Ray.
"""

from modelsat.data._zoo import (
    OUTCOME_COLUMNS,
    QUESTION_COLUMNS,
    SPLITS,
    Zoo,
    load_zoo,
    missing_zoo_error,
    prompt_hash,
)
from modelsat.data.lmeval import lm_eval_models, parse_prompt_fields
from modelsat.data.merge import MergeReport, ModelOutcomes, Outcome, QuestionRecord
from modelsat.data.mmlu_pro import fetch_mmlu_pro, fetch_mmlu_pro_archives, mmlu_pro_models
from modelsat.data.stats import stats_markdown, zoo_stats
from modelsat.data.validate import Problem, validate_zoo
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
    "Zoo",
    "fetch_mmlu_pro",
    "fetch_mmlu_pro_archives",
    "import_outcomes",
    "lm_eval_models",
    "load_zoo",
    "missing_zoo_error",
    "mmlu_pro_models",
    "parse_prompt_fields",
    "prompt_hash",
    "stats_markdown",
    "validate_zoo",
    "zoo_stats",
]
