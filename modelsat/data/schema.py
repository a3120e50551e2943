"""The routing data directory format as a public contract: files, columns, Arrow types, meaning.

A routing data directory holds three Parquet files (the schema of the shared routing datasets, `../shared/data/README.md`,
and the README section "Routing data"):

- `questions.parquet`: one row per question;
- `outcomes.parquet`: one row per (question, candidate model), the complete outcome matrix;
- `models.parquet`: one row per candidate model.

`COLUMNS` lists every column once. `modelsat.data.validate_routing_data` checks a directory against it, the importers write
it (`arrow_schema`), and the README's tables document it. `render_multiple_choice` is the one way a multiple-choice
instruction is rendered (question, then one `A. ...` line per option), shared by every importer.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = [
    "COLUMNS",
    "FILES",
    "LETTERS",
    "ColumnSpec",
    "arrow_schema",
    "columns_of",
    "fold_whitespace",
    "render_multiple_choice",
]

FILES = ("questions.parquet", "outcomes.parquet", "models.parquet")
"""The three files of a routing data directory."""

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
"""Option letters of multiple-choice instructions, in order (MMLU-Pro uses A–J)."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column of one zoo file.

    Attributes:
        file: `questions.parquet`, `outcomes.parquet` or `models.parquet`.
        name: column name.
        kind: `string`, `float` (any floating or integer Arrow type is accepted on read) or `int`.
        required: whether `load_routing_data` needs the column (others are optional; importers write all of them).
        nullable: whether null values are allowed.
        meaning: one line for the docs.
    """

    file: str
    name: str
    kind: str
    required: bool
    nullable: bool
    meaning: str

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type the importers write (float32 for `score`, as in the shared data)."""
        if self.kind == "string":
            return pa.string()
        if self.kind == "int":
            return pa.int64()
        return pa.float32() if self.name == "score" else pa.float64()


COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec(
        "questions.parquet",
        "question_id",
        "string",
        True,
        False,
        "Globally unique id, prefixed by its source, e.g. `mmlu_pro/70`, `lm_eval/arc_easy/12`.",
    ),
    ColumnSpec(
        "questions.parquet",
        "benchmark",
        "string",
        True,
        False,
        "Source benchmark, e.g. `mmlu_pro`, `gsm8k`, `mmlu` (an lm-eval task's top-level group).",
    ),
    ColumnSpec(
        "questions.parquet",
        "task",
        "string",
        True,
        False,
        "Finest sub-task label (MMLU-Pro `src`, the lm-eval task name); aptitude tests are drawn per task.",
    ),
    ColumnSpec(
        "questions.parquet",
        "category",
        "string",
        False,
        True,
        "Coarse category (MMLU-Pro's 14 categories), else null.",
    ),
    ColumnSpec(
        "questions.parquet",
        "prompt",
        "string",
        True,
        False,
        "The instruction as a user would send it; multiple choice: the question, then one `A. ...` line per option.",
    ),
    ColumnSpec(
        "questions.parquet",
        "reference",
        "string",
        False,
        True,
        "Gold answer: the option letter for multiple choice, else the answer string; null if unknown.",
    ),
    ColumnSpec(
        "questions.parquet",
        "split",
        "string",
        False,
        False,
        "`train` or `test` (`test` rows are the held-out set; absent = all `train`).",
    ),
    ColumnSpec("outcomes.parquet", "question_id", "string", True, False, "Joins to `questions.parquet`."),
    ColumnSpec(
        "outcomes.parquet", "model", "string", True, False, "Candidate model name, as in `models.parquet`."
    ),
    ColumnSpec(
        "outcomes.parquet",
        "score",
        "float",
        True,
        False,
        "In [0, 1]: 1.0 = correct, 0.0 = wrong (a missing or unparseable answer is 0.0); soft scores allowed.",
    ),
    ColumnSpec(
        "outcomes.parquet",
        "response_tail",
        "string",
        False,
        True,
        "The last 400 characters of the model's response; null where the source has none.",
    ),
    ColumnSpec(
        "outcomes.parquet",
        "cost_usd",
        "float",
        False,
        True,
        "Cost of this query in USD; all rows or none.",
    ),
    ColumnSpec("models.parquet", "model", "string", True, False, "Candidate model name (unique)."),
    ColumnSpec(
        "models.parquet",
        "n_questions",
        "int",
        False,
        False,
        "Questions with an outcome (= every question of the zoo).",
    ),
    ColumnSpec("models.parquet", "accuracy", "float", False, False, "Mean `score` over the zoo's questions."),
    ColumnSpec(
        "models.parquet",
        "source_repo",
        "string",
        False,
        True,
        "Where the outcomes come from: `owner/repo@commit`, `lm-eval:<log dir>`, `TIGER-AI-Lab/MMLU-Pro:<archive>`.",
    ),
    ColumnSpec("models.parquet", "params_b", "float", False, True, "Parameters in billions, if known."),
    ColumnSpec("models.parquet", "price_per_mtok", "float", False, True, "USD per million tokens, if known."),
    ColumnSpec(
        "models.parquet", "mean_cost_usd", "float", False, True, "Mean `cost_usd` per query, if known."
    ),
)


def columns_of(file: str) -> tuple[ColumnSpec, ...]:
    """The column specs of one file, in the documented order."""
    return tuple(c for c in COLUMNS if c.file == file)


def arrow_schema(file: str) -> pa.Schema:
    """The Arrow schema the importers write for `file` (every documented column).

    Raises:
        ValueError: for a file name outside `FILES`.
    """
    if file not in FILES:
        raise ValueError(f"unknown zoo file {file!r}; allowed: {', '.join(FILES)}")
    return pa.schema([pa.field(c.name, c.arrow_type, nullable=True) for c in columns_of(file)])


def render_multiple_choice(question: str, options: list[str]) -> str:
    """The instruction text of a multiple-choice question: the question, then `A. option` lines.

    The text is kept exactly (no stripping), as in the shared `mmlu_pro` zoo.

    Args:
        question: the question text.
        options: the option texts, at most 26 (`LETTERS`).
    Returns:
        `question + "\\nA. " + options[0] + "\\nB. " + ...`.
    Raises:
        ValueError: if there are more options than letters.
    """
    if len(options) > len(LETTERS):
        raise ValueError(f"{len(options)} options; at most {len(LETTERS)} can be lettered")
    return question + "".join(f"\n{LETTERS[i]}. {o}" for i, o in enumerate(options))


def fold_whitespace(text: str) -> str:
    """`text` with every whitespace run folded to one space and the ends stripped (for comparing sources)."""
    return " ".join(text.split())
