"""Drive %%rlm and %rlm in a real InteractiveShell against the scripted model server."""

from __future__ import annotations

import ctypes
import json
import os
import threading
import time

import pytest

from rlm_jupyter.testing import ScriptedServer

from jupyter_helpers import Shell, use_server

ROOT = [
    "Looking.\n```repl\nprint('str' if isinstance(context, str) else 'dict', len(context))\n```",
    "```repl\nparts = llm_query_batched(['Is 42 here? ' + str(c) for c in [context]])\nprint(parts)\n```",
    "FINAL(the answer is 42)",
]


def slow_sub(prompt: str, req: object) -> str:
    time.sleep(1.5)
    return "slow"


SLOW_ROOT = [
    "```repl\nparts = llm_query_batched(['q%d' % i for i in range(8)])\nprint(parts)\n```",
    "FINAL(done)",
]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected a UsageError line on stderr"
    return err[-1]


# ----------------------------------------------------------------------------- loading
def test_load_ext_is_fast_and_does_not_import_litellm() -> None:
    import subprocess
    import sys

    code = ("import time, sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
            "ip = InteractiveShell.instance()\nt = time.perf_counter()\n"
            "ip.run_line_magic('load_ext', 'rlm')\nt = time.perf_counter() - t\n"
            "print(t, 'litellm' in sys.modules, 'anywidget' in sys.modules, "
            "'rlm' in ip.magics_manager.magics['cell'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out[1:] == ["False", "False", "True"]
    assert float(out[0]) <= 0.2


def test_terminal_ipython_prints_a_compact_log(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    cell = tmp_path / "cell.ipy"
    cell.write_text("%%rlm --context doc --out code\nWhat is the access code for the vault in building 7?\n")
    script = ("ip = get_ipython()\nip.run_line_magic('load_ext', 'rlm')\n"
              "ip.run_line_magic('rlm', 'demo')\nfrom rlm_jupyter.demo import make_document\n"
              "doc = make_document(30_000)\nprint(type(ip).__name__)\n"
              f"ip.run_cell(open({str(cell)!r}).read())\nprint('code =', code)\n")
    ipython = Path(sys.executable).with_name("ipython")
    env = dict(os.environ, RLM_LOG_DIR=str(tmp_path / "runs"), LITELLM_LOCAL_MODEL_COST_MAP="True")
    env.pop("RLM_MODEL", None)
    out = subprocess.run([str(ipython), "--colors=NoColor", "-c", script], capture_output=True,
                         text=True, timeout=300, env=env).stdout
    lines = out.splitlines()
    assert "TerminalInteractiveShell" in lines
    assert any(ln.startswith("▶ RLM") for ln in lines) and any(ln.startswith("■ ok") for ln in lines)
    assert "code = The access code for the vault in building 7 is 4921-ALPHA." in lines
    assert len(lines) < 25  # compact: one line per step, no reprinted outputs


# ----------------------------------------------------------------------------- running
def test_cell_runs_and_stores_answer(shell: Shell, capsys) -> None:
    shell["doc"] = "the key is 42"
    with ScriptedServer(root=list(ROOT), sub="42 is here") as srv:
        use_server(shell, srv)
        res = shell.run("%%rlm --context doc --out answer\nWhat is the key?")
    assert res.success, res.error_in_exec
    assert shell["answer"] == "the answer is 42"
    run = shell["answer_run"]
    assert run.status == "ok" and shell["_rlm"] is run and shell.magics.last_result is run
    out = capsys.readouterr().out
    assert "▶ RLM openai/scripted" in out and "■ ok" in out and "the answer is 42" in out
    assert "str 13" in json.dumps([e.to_dict() for e in run.events])  # context reached the sandbox
    assert len(srv.requests.subs()) == 1


def test_options_reach_the_engine(shell: Shell, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("file text")
    shell["path"] = str(tmp_path / "notes.txt")
    with ScriptedServer(root=list(ROOT), sub="ok") as srv:
        use_server(shell, srv)
        res = shell.run("%%rlm -c path -o res --sub-model openai/scripted --sandbox local "
                        "--max-depth 2 --max-iterations 5 --max-subcalls 9 --max-tokens 90000 "
                        "--budget 0.5 --timeout 60 --quiet\nQ?")
        assert res.success, res.error_in_exec
    started = shell["res_run"].events[0]
    assert started.type == "run_started"
    assert started.limits["max_iterations"] == 5 and started.limits["max_depth"] == 2
    assert started.limits["max_subcalls"] == 9 and started.limits["max_tokens"] == 90000
    assert started.limits["budget_usd"] == 0.5 and started.limits["timeout_s"] == 60
    assert started.sandbox == "local" and "str" in started.context_summary


def test_model_option_and_named_contexts(shell: Shell) -> None:
    shell["a"] = [1, 2, 3]
    shell["b"] = "bee"
    with ScriptedServer(root=list(ROOT), sub="ok") as srv:
        shell.magics.api_base = srv.base_url
        shell.magics.api_key = "scripted"
        res = shell.run(f"%%rlm first=a second=b --model {srv.model} -o res\nQ?")
        assert res.success, res.error_in_exec
    out = shell["res_run"].events
    code = [e for e in out if e.type == "code_executed"][0]
    assert code.stdout.startswith("dict 2")


def test_quoted_and_spaced_contexts_are_expressions_never_literals(shell: Shell) -> None:
    """Found by a newcomer: --context "b" ran on the string 'b', and an expression with
    spaces could not be written at all."""
    import pandas as pd

    shell["b"] = [10, 20, 30]
    shell["df"] = pd.DataFrame({"x": [1, 6, 7, 9]})
    cells = {'--context "b"': "list", "--context 'b'": "list",
             '--context df.query("x > 5")': "DataFrame", '--context "df[df.x > 5]"': "DataFrame",
             "--context \"{'a': b, 'b': b}\"": "dict", "--context dict(a=b, b=b)": "dict"}
    with ScriptedServer(root=lambda req: "FINAL(done)") as srv:
        use_server(shell, srv)
        for options, kind in cells.items():
            res = shell.run(f"%%rlm {options} -o res --quiet\nQ?")
            assert res.success, (options, res.error_in_exec)
            summary = shell["res_run"].events[0].context_summary
            assert kind in summary and "str" not in summary, (options, summary)


def test_interpolation_and_raw(shell: Shell) -> None:
    shell["who"] = "Ada"
    with ScriptedServer(root=lambda req: "FINAL(ok)") as srv:
        use_server(shell, srv)
        assert shell.run("%%rlm -o res --quiet\nHi {who}, keep {{who}} and {'x': {1}} and {nope}").success
        assert shell["res_run"].question == "Hi Ada, keep {who} and {'x': {1}} and {nope}"
        assert shell.run("%%rlm -o res --quiet --raw\nHi {who}").success
        assert shell["res_run"].question == "Hi {who}"


def test_widget_mode_builds_the_view(shell: Shell, monkeypatch) -> None:
    import IPython.display

    from rlm_jupyter.jupyter.widget import RunWidget

    shown: list[object] = []
    real_display = IPython.display.display

    def spy(*objs, **kwargs):
        shown.extend(objs)
        return real_display(*objs, **kwargs)

    monkeypatch.setattr(IPython.display, "display", spy)
    shell.magics.display = "widget"
    shell["doc"] = "x"
    with ScriptedServer(root=list(ROOT), sub="42") as srv:
        use_server(shell, srv)
        assert shell.run("%%rlm --context doc -o res\nQ?").success
    run = shell["res_run"]
    assert run.answer == "the answer is 42"
    # One live view was displayed, fed the whole run, and closed with its static copy filled.
    views = [o for o in shown if isinstance(o, RunWidget)]
    assert len(views) == 1
    view = views[0]
    assert view.live is False and view.status == "ok"
    root = view.tree.root
    assert root.run_id == run.run_id and root.answer == "the answer is 42"
    totals = view.tree.totals()
    assert totals.turns == 3 and totals.subcalls == 1
    assert {n["id"] for n in view.snapshot["nodes"]} >= {"head", "end", f"t:{run.run_id}:3"}
    static = view._static_bundle()
    assert "the answer is 42" in static["text/plain"] and "<details" in static["text/html"]


def test_html_mode_and_last(shell: Shell, capsys, monkeypatch) -> None:
    import IPython.display

    shown: list[object] = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    shell.magics.display = "html"
    with ScriptedServer(root=lambda req: "FINAL(done)") as srv:
        use_server(shell, srv)
        assert shell.run("%%rlm\nQ?").success
        # Without a kernel (terminal IPython) the html mode prints the answer as text...
        assert capsys.readouterr().out.strip().splitlines()[-1] == "done"
        assert shown == []
        # ...and in a kernel it displays the folded run as HTML.
        monkeypatch.setattr(shell.ip, "kernel", object(), raising=False)
        assert shell.run("%%rlm\nQ?").success
        monkeypatch.delattr(shell.ip, "kernel", raising=False)
    html = [o for o in shown if isinstance(o, IPython.display.HTML)]
    assert len(html) == 1 and "<details" in html[0].data and "done" in html[0].data
    capsys.readouterr()
    res = shell.run("%rlm last")
    assert res.success and res.result is shell["_rlm"]
    assert res.result.answer == "done"
    bundle = res.result._repr_mimebundle_()
    # The result displays as the folded run in HTML, with a text fallback; both hold the answer.
    assert "<details" in bundle["text/html"] and "done" in bundle["text/html"]
    assert "done" in bundle["text/plain"]


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("cell,needle", [
    ("%%rlm --context undefined_thing\nQ?", "unknown variable 'undefined_thing'"),
    ("%%rlm --context 'nosuch.txt'\nQ?", "neither a notebook expression"),
    ("%%rlm --context \"nodf[nodf.x > 5]\"\nQ?", "unknown variable 'nodf'"),
    ("%%rlm --max-depth two\nQ?", "invalid int value"),
    ("%%rlm --bogus\nQ?", "unrecognized arguments"),
    ("%%rlm --context 'unclosed\nQ?", "cannot parse"),
    ("%%rlm --out 1bad\nQ?", "--out needs a Python identifier"),
    ("%%rlm\n   \n", "The question is empty"),
    ("%%rlm --sandbox vm\nQ?", "Unknown sandbox 'vm'"),
    ("%%rlm --context x a=x\nQ?", "either --context"),
    ("%%rlm --context missing_dir/*.csv\nQ?", "nor a file, directory or glob"),
    ("%rlm frobnicate", "Unknown %rlm subcommand 'frobnicate'"),
    ("%rlm config nope=1", "Unknown setting 'nope'"),
    ("%rlm config max_depth=deep", "Bad value for max_depth"),
    ("%rlm config model", "Expected NAME=VALUE"),
    ("%rlm replay does-not-exist", "No saved run 'does-not-exist'"),
    ("%rlm replay", "Usage: `%rlm replay"),
    ("%rlm last", "No run yet"),
    ("%rlm logs -n many", "-n needs a number"),
    ("%rlm logs extra", "Unexpected"),
])
def test_errors_are_one_line_and_fail_the_cell(shell: Shell, capsys, cell, needle) -> None:
    shell["x"] = 1
    shell.magics.model = "openai/never-called"
    res = shell.run(cell)
    assert not res.success
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    line = error_line_from(captured)
    assert line.startswith("UsageError: ") and needle in line


def error_line_from(captured) -> str:
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_no_model_configured(shell: Shell, capsys) -> None:
    res = shell.run("%%rlm\nQ?")
    assert not res.success
    assert "No model configured" in error_line(capsys)


def test_failed_run_fails_the_cell_and_keeps_partial(shell: Shell, capsys) -> None:
    root = ["```repl\nparts = llm_query_batched(['a', 'b', 'c'])\n```", "FINAL(never)"]
    with ScriptedServer(root=root, sub="x") as srv:
        use_server(shell, srv)
        res = shell.run("%%rlm --max-subcalls 1 -o res\nQ?")
    assert not res.success
    line = error_line(capsys)
    assert line.startswith("UsageError: Run ended with") and "\n" not in line
    assert shell["res_run"].status == "error" and shell["_rlm"] is shell["res_run"]


def test_model_errors_are_one_line(shell: Shell, capsys) -> None:
    with ScriptedServer(root=[], strict=False) as srv:  # every root call answers HTTP 400
        use_server(shell, srv)
        shell.magics.config  # noqa: B018 - touch traitlets
        res = shell.run("%%rlm -o res\nQ?")
    assert not res.success
    assert error_line(capsys).startswith("UsageError: Run ended with")


# ----------------------------------------------------------------------------- interrupt / background
def _interrupt_main_after(delay_s: float) -> threading.Timer:
    main_id = threading.main_thread().ident

    def fire() -> None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(main_id),
                                                   ctypes.py_object(KeyboardInterrupt))

    timer = threading.Timer(delay_s, fire)
    timer.start()
    return timer


def test_interrupt_stops_the_run_within_a_second(shell: Shell, capsys) -> None:
    fired: list[float] = []
    main_id = threading.main_thread().ident

    def sub_then_interrupt(prompt: str, req: object) -> str:
        # The first sub-call reaching the server interrupts the cell (as the ■ button would).
        if not fired:
            fired.append(time.monotonic())
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(main_id),
                                                       ctypes.py_object(KeyboardInterrupt))
        time.sleep(1.5)
        return "slow"

    with ScriptedServer(root=list(SLOW_ROOT), sub=sub_then_interrupt, strict=False) as srv:
        use_server(shell, srv)
        res = shell.run("%%rlm -o res\nQ?")
        elapsed = time.monotonic() - fired[0]
        assert not res.success
        assert elapsed < 2.5, elapsed  # the kernel is back within the stop grace
        line = error_line(capsys)
        assert line.startswith("UsageError: Interrupted: run cancelled") and "`res_run`" in line
        deadline = time.monotonic() + 30
        while "res_run" not in shell.ip.user_ns and time.monotonic() < deadline:
            time.sleep(0.1)
    run = shell["res_run"]
    assert run.status == "cancelled"
    assert any(e.type == "subcall_started" for e in run.events)  # partial trajectory kept
    deadline = time.monotonic() + 5
    while [t for t in threading.enumerate() if t.name == "rlm-run"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name == "rlm-run"]


def test_interrupt_returns_even_if_calls_hang(shell: Shell, capsys) -> None:
    def hanging_sub(prompt: str, req: object) -> str:
        time.sleep(20)
        return "late"

    with ScriptedServer(root=list(SLOW_ROOT), sub=hanging_sub, strict=False) as srv:
        use_server(shell, srv)
        timer = _interrupt_main_after(1.5)
        start = time.monotonic()
        res = shell.run("%%rlm -o res\nQ?")
        elapsed = time.monotonic() - start
        timer.join()
        assert not res.success
        assert elapsed < 1.5 + 3.0, elapsed  # the kernel is free again quickly
        line = error_line(capsys)
        assert line.startswith("UsageError: Interrupted") and "`res_run`" in line
        deadline = time.monotonic() + 30
        while "res_run" not in shell.ip.user_ns and time.monotonic() < deadline:
            time.sleep(0.1)
    assert shell["res_run"].status == "cancelled"
    assert shell.magics.background == []


def test_background_then_stop(shell: Shell, capsys) -> None:
    with ScriptedServer(root=list(SLOW_ROOT), sub=slow_sub, strict=False) as srv:
        use_server(shell, srv)
        start = time.monotonic()
        res = shell.run("%%rlm --background --out bg\nQ?")
        assert res.success and time.monotonic() - start < 1.0
        assert "started in the background" in capsys.readouterr().out
        assert "bg" not in shell.ip.user_ns
        time.sleep(0.8)
        res = shell.run("%rlm stop")
        assert res.success
        assert "Stop requested for 1 background run" in capsys.readouterr().out
    assert shell["bg_run"].status == "cancelled"
    assert shell.magics.background == []
    assert shell.run("%rlm stop").success
    assert "No background run is active" in capsys.readouterr().out


def test_background_finishes_and_sets_variables(shell: Shell) -> None:
    shell.magics.display = "widget"
    with ScriptedServer(root=lambda req: "FINAL(bg done)") as srv:
        use_server(shell, srv)
        assert shell.run("%%rlm -b -o bg\nQ?").success
        handle = shell.magics.background[0][0] if shell.magics.background else None
        if handle is not None:
            handle.wait()
        deadline = time.monotonic() + 10
        while "bg" not in shell.ip.user_ns and time.monotonic() < deadline:
            time.sleep(0.05)
    assert shell["bg"] == "bg done"


# ----------------------------------------------------------------------------- subcommands
def test_config_show_set_reset_and_traitlets(shell: Shell, capsys) -> None:
    assert shell.run("%rlm config model=openai/x max_depth=2 budget=0.25 api_key=sk-secret").success
    out = capsys.readouterr().out
    assert "openai/x" in out and "sk-secret" not in out and "***" in out
    assert "RLMMagics.max_depth = 2" in out
    assert shell.magics.max_depth == 2 and shell.magics.budget == 0.25
    assert shell.run('%config RLMMagics.sub_model = "openai/y"').success
    assert shell.magics.sub_model == "openai/y"
    assert shell.run("%rlm config").success
    assert "openai/y" in capsys.readouterr().out
    assert shell.run("%rlm config --reset").success
    assert shell.magics.model is None and shell.magics.max_depth is None


def test_config_shows_env_defaults(shell: Shell, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RLM_MODEL", "openai/from-env")
    assert shell.run("%rlm config").success
    assert "from RLM_MODEL" in capsys.readouterr().out


def test_doctor(shell: Shell, capsys, monkeypatch) -> None:
    from importlib.metadata import version

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a failing check, on purpose
    shell.magics.model = "openai/gpt-4o-mini"
    assert shell.run("%rlm doctor").success
    out = capsys.readouterr().out
    assert "litellm" in out and "RestrictedPython" in out
    lines = out.strip().splitlines()
    assert f"[ok  ] litellm: version {version('litellm')}" in lines
    assert "[ok  ] model: openai/gpt-4o-mini" in lines
    assert "[FAIL] api key: missing OPENAI_API_KEY" in lines
    assert lines[lines.index("[FAIL] api key: missing OPENAI_API_KEY") + 1].strip().startswith(
        "fix: export OPENAI_API_KEY=")
    assert f"[ok  ] RestrictedPython: version {version('RestrictedPython')}" in lines
    assert f"[ok  ] log directory: {shell.magics.log_dir}" in lines
    assert any(ln.startswith(("[ok  ] docker:", "[FAIL] docker")) for ln in lines)
    # The verdict counts the checks above it (one failed: the missing key, maybe Docker).
    ok = sum(ln.startswith("[ok  ]") for ln in lines)
    failed = sum(ln.startswith("[FAIL]") for ln in lines)
    assert ok + failed == 6 and lines[-1] == f"{ok} ok, {failed} to fix"


def test_doctor_ping_reaches_the_model(shell: Shell, capsys) -> None:
    with ScriptedServer(root=lambda req: "OK", sub="OK") as srv:
        use_server(shell, srv)
        assert shell.run("%rlm doctor --ping").success
    assert "model reachable" in capsys.readouterr().out


def test_logs_replay_cost(shell: Shell, capsys) -> None:
    with ScriptedServer(root=list(ROOT), sub="42") as srv:
        use_server(shell, srv)
        shell["doc"] = "d"
        assert shell.run("%%rlm --context doc -o res\nWhat is the key?").success
    run = shell["res_run"]
    capsys.readouterr()
    assert shell.run("%rlm logs -n 5").success
    out = capsys.readouterr().out
    assert run.run_id in out and "What is the key?" in out and "ok" in out
    assert shell.run(f"%rlm replay {run.run_id}").success
    out = capsys.readouterr().out
    assert "the answer is 42" in out and "turn 2" in out
    assert shell.run(f"%rlm replay {run.log_path}").success
    shell["rid"] = run.run_id
    assert shell.run("%rlm replay $rid").success
    shell.magics.display = "widget"
    assert shell.run(f"%rlm replay {run.run_id}").success
    capsys.readouterr()
    assert shell.run("%rlm cost").success
    out = capsys.readouterr().out
    assert "openai/scripted" in out and "1 runs" in out


def test_cost_and_logs_empty(shell: Shell, capsys) -> None:
    assert shell.run("%rlm cost").success
    assert "ledger is empty" in capsys.readouterr().out
    assert shell.run("%rlm logs").success
    assert "No runs in" in capsys.readouterr().out


def test_models_lists_prices(shell: Shell, capsys) -> None:
    assert shell.run("%rlm models gpt-4o-mini -n 3").success
    out = capsys.readouterr().out
    assert "gpt-4o-mini" in out and "$/1M in" in out
    assert shell.run("%rlm models zz-no-such-model").success
    assert "No models match" in capsys.readouterr().out


def test_demo_and_help(shell: Shell, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RLM_MODEL", "openai/real")
    assert shell.run("x = %rlm demo").success
    assert not shell["x"] and "RLM_MODEL is set" in capsys.readouterr().out
    monkeypatch.delenv("RLM_MODEL")
    assert shell.run("x = %rlm demo").success
    assert shell["x"]
    out = capsys.readouterr().out
    shown = shell.run("%rlm demo")
    assert shown.success and not shell.ip.display_formatter.format(shown.result)[0]  # no "True"
    assert "scripted demo model" in out and "not a real LLM" in out
    assert os.environ["RLM_MODEL"] == shell.magics.model
    from rlm_jupyter.demo import QUESTION, make_document

    shell["doc"] = make_document(30_000)
    assert shell.run(f"%%rlm --context doc -o res --quiet\n{QUESTION}").success
    assert "4921-ALPHA" in shell["res"]
    from rlm_jupyter.jupyter.magics import RLMMagics

    assert "  %%rlm [--context EXPR]" in RLMMagics.rlm.__doc__  # what %%rlm? shows
    assert shell.run("%rlm").success and shell.run("%rlm help").success
    assert "%rlm replay" in capsys.readouterr().out


def test_rerun_replays_from_cache_and_no_cache_bypasses_it(shell: Shell, tmp_path,
                                                           capsys) -> None:
    shell["doc"] = "the key is 42"
    shell.magics.cache = None
    with ScriptedServer(root=lambda req: list(ROOT)[req.turn - 1], sub="42 is here") as srv:
        use_server(shell, srv)
        cell = "%%rlm --context doc --out answer\nWhat is the key?"  # no option: the default
        assert shell.run(cell).success
        calls = len(srv.requests)
        assert "replayed from cache" not in capsys.readouterr().out
        assert shell.run(cell).success  # the same cell again: answered from the cache
        assert len(srv.requests) == calls and shell["answer_run"].cost_usd == 0
        assert shell["answer_run"].usage[srv.model]["cached_calls"] == calls
        assert "replayed from cache" in capsys.readouterr().out  # visibly marked
        assert "replayed from cache" in shell["answer_run"]._repr_mimebundle_()["text/html"]
        nocache = "%%rlm --context doc --out answer --quiet --no-cache\nWhat is the key?"
        assert shell.run(nocache).success
        assert len(srv.requests) == 2 * calls
        assert shell.run("%rlm config cache=False").success  # the knob turns the default off
        assert shell.run(cell).success
        assert len(srv.requests) == 3 * calls
