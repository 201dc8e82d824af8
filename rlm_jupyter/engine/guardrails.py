"""Guardrails: the small-model fixes of the run loop, each one switchable, grouped in profiles.

The RLM protocol itself lives in :mod:`rlm_jupyter.engine.loop`. Everything here is a fix found
by watching small local models (Qwen2.5-Coder 0.5B/1.5B) fail at it; each one changes what the
engine does for every model, so each is a named switch that the evaluation kit
(``benchmarks/eval_local.py ds --cells "small@0 off@0 small,-data_hints@0"``) measures
on and off.

``guardrails=`` (the ``guardrails`` knob, ``RLM_GUARDRAILS``, ``--guardrails``) takes:

- ``"auto"`` (default): ``"small"`` for a local or small model (``local/*``, a name with
  ``0.5b``/``1.5b``/``3b``/``smollm``...), else ``"strong"``;
- ``"small"``: every fix the 1.5B measurements support (all but ``confirm_final``);
- ``"strong"``: the fixes that cost a capable model nothing (they act only on a reply that is
  already wrong); the ones that spend a turn on a plausible answer are off;
- ``"off"``: the bare protocol;
- a dict ``{fix: bool}``: the ``auto`` profile with those switches changed, or a string
  ``"small,-loop_breaker"`` / ``"off,+loop_breaker"`` (a profile, then changes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from rlm_jupyter import errors

#: Every fix, in the order the README lists them, with what it does.
FIXES: dict[str, str] = {
    "repeat_ladder": "a reply whose every block already ran is not run again nor kept in the "
                     "history; the next call samples hotter (0.7, 1.0, 1.3)",
    "prose_only": "a reply with neither code nor FINAL is not kept in the history (small "
                  "models write the output they expect, then answer from it)",
    "trailing_prose": "prose after the last code block is dropped from the history (invented "
                      "outputs)",
    "literal_final": "a code block that only says FINAL(literal) is read as a prose FINAL, "
                     "so the prose checks apply",
    "unfenced_code": "code written without its opening fence is recovered and run",
    "final_with_code": "a prose FINAL(...) in the same reply as code is refused until the "
                       "output has been seen",
    "placeholder_final": "FINAL(your answer) / FINAL(...) and other placeholders are refused",
    "ungrounded_number": "a bare-number FINAL that no output ever showed is refused, once",
    "final_unknown_name": "FINAL(billing) with no variable billing answers the word",
    "blind_subcall_note": "llm_query prompts too short to carry the evidence get a note",
    "import_hints": "NameError of a module or class gets the import to add",
    "context_rebind": "code that rebinds `context` is refused",
    "key_word_lines": "the first message shows the lines holding the question's key words",
    "echo_filter": "out of turns, a reply that only echoes our feedback is no answer",
    "confirm_final": "a finish whose value the model never saw printed (FINAL in the block "
                     "that computes it, or an unprinted value) is shown the output and asked "
                     "to confirm or correct, once",
    "loop_breaker": "empty or fence-only replies and repeated non-answers get a concrete next "
                    "step built from what was found; after 3 in a row the run ends with the "
                    "best evidence so far",
    "last_turn_ok": "an answer accepted on the out-of-turns call ends the run ok, not as a "
                    "turn-limit error",
    "data_hints": "the first message says how the context splits into fields (CSV header, "
                  "key=value records, log fields, a DataFrame filter with its own columns); a "
                  "pandas filter without parentheses gets the corrected form",
    "empty_answer": "a finish of 0, an empty value or None is asked once to check its filter "
                    "against the data's real format",
    "prompt_cache": "local servers: cache_prompt and a stable id_slot in every root request; "
                    "notes are appended as new messages, never rewritten into the last one",
}

_ALL = dict.fromkeys(FIXES, True)
#: The newer fixes (issue 18 and after), measured with the local 1.5B model only.
NEW_FIXES = ("confirm_final", "loop_breaker", "last_turn_ok", "prompt_cache", "data_hints",
             "empty_answer")
#: The defaults, per profile: what the evaluation kit's numbers support (benchmarks/RESULTS.md,
#: "Evaluation kit"). "small" is measured (Qwen2.5-Coder 1.5B). "strong" is the engine's
#: behaviour before the switches existed (what tests/engine/test_runs.py pins): every older fix
#: acts only on a reply that is already wrong, so it costs a capable model nothing; the new ones
#: are off there, since nothing measured them on a hosted model and each changes what a caller
#: sees (a turn spent confirming, a status, other notes, llama.cpp-only request fields).
PROFILES: dict[str, dict[str, bool]] = {
    "off": dict.fromkeys(FIXES, False),
    # confirm_final is off: switched off on the 11 tasks where it acted, the 1.5B was right on
    # 10 against 9 with it on; it never turned a wrong answer right and cost a turn each time
    # (benchmarks/RESULTS.md, "Each fix off, on the same tasks").
    "small": {**_ALL, "confirm_final": False},
    "strong": {**_ALL, **dict.fromkeys(NEW_FIXES, False)},
}
PROFILE_NAMES = ("auto", *PROFILES)

#: Model names that get the "small" profile under "auto".
_SMALL = re.compile(r"(^local/)|(\b|[-_/])(0\.5|1\.5|1|2|3|3\.8|4)b\b|smollm|tinyllama|"
                    r"phi-?[1-3]\b|gemma-?[23]?-?2b", re.I)
#: Hosts that make an ``api_base`` a local server (prompt_cache sends llama.cpp's fields there).
_LOCAL_HOST = re.compile(r"^https?://(127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\])(:|/|$)")


def profile_for(model: str | None) -> str:
    """The profile ``"auto"`` picks for ``model``."""
    return "small" if model and _SMALL.search(model) else "strong"


def is_local_server(api_base: str | None, model: str | None = None) -> bool:
    return bool((api_base and _LOCAL_HOST.match(api_base)) or
                (model and model.startswith("local/")))


@dataclass(frozen=True)
class Guardrails:
    """The switches one run uses; ``guards.on("confirm_final")``."""

    profile: str
    switches: Mapping[str, bool] = field(default_factory=dict)

    def on(self, fix: str) -> bool:
        return bool(self.switches.get(fix, False))

    def enabled(self) -> list[str]:
        return [name for name in FIXES if self.on(name)]

    def describe(self) -> str:
        base = PROFILES.get(self.profile, {})
        changed = [f"{'+' if v else '-'}{k}" for k, v in self.switches.items()
                   if base.get(k) != v]
        return ",".join([self.profile, *changed])


def resolve(setting: Any, model: str | None = None) -> Guardrails:
    """The :class:`Guardrails` for a ``guardrails=`` value and the root model."""
    if setting is None or setting == "":
        setting = "auto"
    changes: dict[str, bool] = {}
    if isinstance(setting, Mapping):
        base = "auto"
        changes = {str(k): v for k, v in setting.items()}
    elif isinstance(setting, str):
        parts = [p.strip() for p in setting.split(",") if p.strip()]
        base = parts[0] if parts and parts[0] in PROFILE_NAMES else "auto"
        for part in parts[1:] if parts and parts[0] in PROFILE_NAMES else parts:
            if part[0] in "+-":
                changes[part[1:]] = part[0] == "+"
            else:
                raise errors.ConfigError(
                    f"Unknown guardrails {setting!r}: use one of {', '.join(PROFILE_NAMES)}, "
                    f"optionally followed by +fix/-fix (fixes: {', '.join(FIXES)}).")
    else:
        raise errors.ConfigError(f"guardrails must be a profile name or a dict of fix -> bool, "
                                 f"got {type(setting).__name__}.")
    profile = profile_for(model) if base == "auto" else base
    switches = dict(PROFILES[profile])
    for name, value in changes.items():
        if name not in FIXES:
            raise errors.ConfigError(f"Unknown guardrail {name!r}: the fixes are "
                                     f"{', '.join(FIXES)}.")
        if not isinstance(value, bool):
            raise errors.ConfigError(f"guardrails[{name!r}] must be True or False, "
                                     f"got {value!r}.")
        switches[name] = value
    return Guardrails(profile, switches)


# -- helpers the loop calls for the new fixes -----------------------------------------------------
_EMPTY = re.compile(r"(0+(\.0+)?|none|null|nan|\[\]|\{\}|\(\)|set\(\)|''|\"\"|"
                    r"no (rows|lines|matches|results)( found)?)", re.I)


def is_empty_answer(value: Any) -> bool:
    """A finish that says nothing was found: 0, an empty container, None, "" (empty_answer)."""
    if value is None:
        return True
    token = str(value).strip().strip(".").strip()
    return not token or bool(_EMPTY.fullmatch(token))


#: Degenerate replies (loop_breaker) in a row after which the run ends with its best evidence.
LOOP_BOUND = 3
_FENCE_ONLY = re.compile(r"^[\s`~]*(repl|python|py|python3|ipython|code)?[\s`~]*$", re.I)


def is_degenerate(text: str) -> bool:
    """An empty reply, or one made of fences and a language word (```` ```\\nrepl\\n``` ````)."""
    return bool(_FENCE_ONLY.fullmatch(text or ""))


def seen_in(value: str, outputs: list[str]) -> bool:
    """Whether ``value`` appears in an output the model was shown (numbers compared as
    numbers: ``1234.5`` matches ``1,234.50``)."""
    token = str(value).strip().strip("'\"").rstrip(".")
    if not token:
        return True
    if any(token in out for out in outputs):
        return True
    plain = token.replace(",", "")
    if re.fullmatch(r"-?\d+(\.\d+)?", plain):
        target = float(plain)
        for out in outputs:
            for num in re.findall(r"-?\d[\d,]*(?:\.\d+)?", out):
                try:
                    if abs(float(num.replace(",", "")) - target) < 1e-9:
                        return True
                except ValueError:
                    continue
    return False


def assigned_names(code: str) -> list[str]:
    """Names a block assigns at its top level, last first (for the loop breaker's example)."""
    import ast

    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for target in targets:
            if isinstance(target, ast.Name) and target.id not in names:
                names.append(target.id)
    return list(reversed(names))
