"""The settings table is the one list of knobs: every front end and the README must show each.

``drift(knobs)`` names every place a knob is missing from; the suite asserts it is empty for the
real table and that it catches a knob added to the table alone (so the check cannot rot into
one that passes whatever happens).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import warnings
from pathlib import Path

import pytest

from rlm_jupyter import settings
from rlm_jupyter.settings import KNOBS, Knob, Settings

ROOT = Path(__file__).resolve().parents[1]


def _option_dests(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {flag: action.dest for action in parser._actions for flag in action.option_strings}


def drift(knobs: tuple[Knob, ...]) -> list[str]:
    """``"<front end>: <knob>"`` for every knob a front end or the README lacks."""
    from rlm_jupyter import RLM, cli
    from rlm_jupyter.jupyter.magics import RLMMagics

    missing: list[str] = []
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    params = inspect.signature(RLM.__init__).parameters
    traits = RLMMagics.class_traits(config=True)
    magic_options = _option_dests(RLMMagics.rlm.parser)
    run_parser = next(a for a in cli.build_parser()._actions
                      if isinstance(a, argparse._SubParsersAction)).choices["run"]
    cli_options = _option_dests(run_parser)
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- settings-table", 1)[1].split("<!-- /settings-table -->", 1)[0]
    readme_rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", table, re.M)}
    for k in knobs:
        if k.name not in fields or fields[k.name].default != k.default:
            missing.append(f"Settings: {k.name}")
        if k.kwarg:
            param = params.get(k.name)
            if param is None or param.default not in (k.default, None):
                missing.append(f"RLM.__init__: {k.name}")
        if k.traitlet and k.traitlet not in traits:
            missing.append(f"RLMMagics traitlet: {k.traitlet}")
        for flag in k.option or ():
            if magic_options.get(flag) != k.name:
                missing.append(f"%%rlm option: {flag}")
        for flag in k.cli or ():
            if cli_options.get(flag) != k.name:
                missing.append(f"rlm run flag: {flag}")
        row = readme_rows.get(k.name, "")
        spelled = [k.env, k.traitlet, *(k.option or ()), *(k.cli or ())]
        if not row or any(f"`{s}`" not in row for s in spelled if s):
            missing.append(f"README settings table: {k.name}")
    return missing


def test_every_front_end_and_the_readme_show_every_knob() -> None:
    assert drift(KNOBS) == [], ("Regenerate the README table with `python -m "
                                "rlm_jupyter.settings` and give each knob its front ends.")


def test_the_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings.markdown_table() in readme, "run `python -m rlm_jupyter.settings`"


def test_a_knob_only_in_the_table_is_caught_everywhere() -> None:
    """Proves the check: a new knob declared with every front end but implemented nowhere."""
    new = Knob("max_widgets", int, None, "A knob nobody wired.", env="RLM_MAX_WIDGETS",
               traitlet="max_widgets", option=("--max-widgets",), cli=("--max-widgets",))
    assert drift(KNOBS + (new,)) == [
        "Settings: max_widgets", "RLM.__init__: max_widgets", "RLMMagics traitlet: max_widgets",
        "%%rlm option: --max-widgets", "rlm run flag: --max-widgets",
        "README settings table: max_widgets"]


def test_front_ends_show_nothing_the_table_lacks() -> None:
    """The other direction: a traitlet or option that is not a knob is a knob declared twice."""
    from rlm_jupyter.jupyter.magics import RLMMagics

    knob_traits = {k.traitlet for k in KNOBS if k.traitlet}
    notebook_only = {"display"}  # how the notebook draws a run: not a setting of the run
    deprecated = set(settings.DEPRECATED)
    assert set(RLMMagics.class_traits(config=True)) - knob_traits == notebook_only | deprecated


def test_sandbox_kinds_are_listed_once() -> None:
    from rlm_jupyter import sandbox

    registry = next(v for v in vars(sandbox).values()
                    if isinstance(v, dict) and "local" in v and "docker" in v)
    assert tuple(registry) == settings.SANDBOX_KINDS


def test_max_tokens_is_deprecated_for_max_total_tokens() -> None:
    from rlm_jupyter import RLM

    with pytest.warns(DeprecationWarning, match="max_tokens is deprecated.*max_total_tokens"):
        rlm = RLM(model="openai/x", max_tokens=1234)
    assert rlm.settings.max_total_tokens == 1234
    assert "max_tokens" not in rlm.settings.litellm_kwargs  # not sent as the per-reply cap
    with pytest.warns(DeprecationWarning):
        assert rlm.settings.max_tokens == 1234
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rlm = RLM(model="openai/x", max_total_tokens=5, max_reply_tokens=7)
    assert rlm.settings.request_params == {"max_tokens": 7}


@pytest.mark.parametrize("kwargs,needle", [
    ({"max_depth": -1}, "max_depth must be an integer of at least 0"),
    ({"budget_usd": 0}, "budget_usd must be a number above 0"),
    ({"sandbox": "vm"}, "Unknown sandbox 'vm': use one of local, docker, inprocess"),
    ({"transport": "grpc"}, "Unknown transport 'grpc'"),
    ({"max_reply_tokens": 0}, "max_reply_tokens must be an integer of at least 1"),
    ({"output_chars": 10}, "output_chars must be an integer of at least 100"),
])
def test_validation_comes_from_the_table(kwargs, needle) -> None:
    from rlm_jupyter import RLM
    from rlm_jupyter.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(needle)):
        RLM(model="openai/x", **kwargs)


def test_config_is_a_thin_re_export() -> None:
    from rlm_jupyter import config

    assert config.Settings is Settings and config.ENV_VARS == settings.ENV_VARS
