"""Routing data: zoo directories (questions, per-model outcomes, optional cost) in the shared schema.

- Loading: `load_zoo` validates a directory and returns a `Zoo` with an outcome matrix `[n_questions, n_models]`
  (`modelsat.data._zoo`).

Everything here is light (numpy, pyarrow, stdlib): no torch, no Ray.
"""

from modelsat.data._zoo import OUTCOME_COLUMNS, QUESTION_COLUMNS, SPLITS, Zoo, load_zoo, prompt_hash

__all__ = ["OUTCOME_COLUMNS", "QUESTION_COLUMNS", "SPLITS", "Zoo", "load_zoo", "prompt_hash"]
