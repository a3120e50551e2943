"""Five-keyword task descriptions for aptitude tasks (paper §3), derived without a generative model."""

from __future__ import annotations

import math
import re
from collections import Counter

__all__ = ["describe_task", "doc_freq"]

_STOP = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each either few for from further had has have
    having he her here hers him his how i if in into is it its itself just least let like made make many may me
    might more most much must my neither no nor not now of off often on once one only or other our out over own
    per same she should since so some such than that the their them then there these they this those through
    thus to too two under until up upon us used using very was we were what when where which while who whom why
    will with would yet you your following given find value answer question statement true false correct none
    three four five first second best example options option another number total each following which""".split()
)
_WORD = re.compile(r"[a-z][a-z]{3,}")
_SOURCE_PREFIXES = {"ori_mmlu": "", "stemez": "", "theoremqa": "", "scibench": "Science"}
_ABBREVIATIONS = {
    "eecs": "Electrical Engineering and Computer Science",
    "fund": "Fundamental Physics",
    "stat": "Statistics",
    "thermo": "Thermodynamics",
    "diff": "Differential Equations",
    "class": "Classical Mechanics",
    "quan": "Quantum Chemistry",
    "chemmc": "Chemistry",
    "matter": "Physical Chemistry of Matter",
    "atkins": "Physical Chemistry",
    "calculus": "Calculus",
    "gsm8k": "Grade School Math Word Problems",
    "math_l5": "Competition Mathematics",
    "math": "Competition Mathematics",
    "mbpp": "Python Programming",
    "humaneval": "Python Programming",
    "arc_c": "Grade School Science",
    "winogrande": "Commonsense Pronoun Resolution",
}


def _task_phrase(task: str) -> str:
    """`ori_mmlu-high_school_physics` -> `High School Physics`; `stemez-Physics` -> `Physics`."""
    name = task
    if "-" in task:
        prefix, rest = task.split("-", 1)
        if prefix.lower() in _SOURCE_PREFIXES:
            name = rest
    key = name.lower()
    if key in _ABBREVIATIONS:
        return _ABBREVIATIONS[key]
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", name.replace("_", " ").replace("-", " ")).split()
    words = [w if w.isupper() and len(w) > 1 else w.capitalize() for w in words]
    return " ".join("QA" if w == "Qa" else w for w in words)


def doc_freq(prompts: list[str]) -> Counter:
    """Document frequency of content words (lower-case, >= 4 letters, no stop words)."""
    c: Counter = Counter()
    for p in prompts:
        c.update(set(_WORD.findall(p.lower())) - _STOP)
    return c


def describe_task(
    task: str,
    task_prompts: list[str],
    all_prompts: list[str],
    n_keywords: int = 5,
    background: Counter | None = None,
) -> str:
    """Up to five keywords for a task (paper §3 gives every task a 5-keyword description).

    The first keyword is the task name made readable; the rest are the words most over-represented in the
    task's instructions relative to all instructions (document-frequency lift, ties broken alphabetically),
    so the description is deterministic and needs no generative model. Fewer than five come back only when
    the task's instructions hold too few distinctive words (tiny synthetic zoos; every shared zoo yields five).

    Args:
        task: the `task` label.
        task_prompts: instructions of this task.
        all_prompts: instructions of the whole zoo (the background).
        n_keywords: keywords in total, >= 1.
        background: `doc_freq(all_prompts)` if already computed (saves time when describing many tasks).
    Returns:
        Comma-separated keywords, e.g. `High School Physics, Velocity, Acceleration, Force, Friction`.
    """
    phrase = _task_phrase(task)
    taken = {w.lower() for w in phrase.split()}

    df_task = doc_freq(task_prompts)
    df_all = background if background is not None else doc_freq(all_prompts)
    n_t, n_a = max(len(task_prompts), 1), max(len(all_prompts), 1)
    scored = []
    for w, c in df_task.items():
        if c < 2 or w in taken:
            continue
        p_t = c / n_t
        p_a = (df_all.get(w, 0) + 1) / (n_a + 2)
        scored.append((-(p_t * math.log(p_t / p_a)), w))
    scored.sort()
    keywords = [phrase]
    for _, w in scored:
        if len(keywords) >= n_keywords:
            break
        if any(w.startswith(k.lower()[:5]) or k.lower().startswith(w[:5]) for k in keywords[1:]):
            continue  # skip near-duplicates (plural forms, derivations)
        keywords.append(w.capitalize())
    return ", ".join(keywords)
