"""An evaluation kit for long-context methods: generators that know the exact answers.

- :func:`make_sniah` -- one needle in filler prose, 8k to 4M tokens.
- :func:`make_oolong` -- aggregation over labelled records (counts, most frequent, per user).
- :func:`make_pairs` -- pairs of users sharing a rare label (scored by F1).
- :func:`run_suite` -- an RLM and the same model's plain (truncated) call side by side.

``benchmarks/eval_local.py`` runs it against a local llama.cpp model and writes
``benchmarks/RESULTS.md``.
"""

from .oolong import build_dataset, make_all, make_oolong, make_pairs, make_shared
from .runner import (Outcome, TokenCounter, markdown_table, outcome_lines, replace_section,
                     run_plain, run_rlm, run_suite, save_jsonl, summarize, truncate_to_tokens)
from .scoring import (parse_pairs, score, score_exact, score_needle, score_number,
                      score_pairs)
from .sniah import SIZES as SNIAH_SIZES
from .sniah import make_sniah
from .tasks import Task

__all__ = [
    "Outcome", "SNIAH_SIZES", "Task", "TokenCounter", "build_dataset", "make_all", "make_oolong",
    "make_pairs", "make_shared", "make_sniah", "markdown_table", "outcome_lines", "parse_pairs",
    "replace_section", "run_plain", "run_rlm", "run_suite", "save_jsonl", "score",
    "score_exact", "score_needle", "score_number", "score_pairs", "summarize",
    "truncate_to_tokens",
]
