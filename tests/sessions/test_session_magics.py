"""The notebook front end of sessions, typed answers, tools and export, in a real IPython shell
over the scripted server: %%rlm --continue / --session / --output-type / --tools, %rlm
sessions / end / pull / export, and `rlm export`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jupyter"))
from jupyter_helpers import Shell, use_server  # noqa: E402

from rlm_jupyter import cli  # noqa: E402


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


@pytest.fixture
def shell(tmp_path, monkeypatch, sandbox_kind):
    for name in ("RLM_MODEL", "RLM_API_BASE", "RLM_API_KEY", "RLM_SUB_MODEL", "RLM_SANDBOX"):
        monkeypatch.delenv(name, raising=False)
    ip = InteractiveShell.instance()
    sh = Shell(ip)
    if sh.magics is None:
        ip.run_line_magic("load_ext", "rlm_jupyter")
    ip.run_line_magic("rlm", "config --reset")
    sh.magics.log_dir = str(tmp_path / "runs")
    sh.magics.display = "text"
    sh.magics.sandbox = sandbox_kind
    sh.magics.transport = "litellm"
    yield sh
    sh.magics.close()
    sh.magics._sessions = None
    ip.run_line_magic("rlm", "config --reset")


def cell(sh: Shell, line: str, body: str):
    result = sh.run(f"%%rlm {line}\n{body}")
    return result


def test_continue_keeps_variables_and_out_gets_the_typed_value(shell, server_factory, capsys):
    srv = server_factory(root=[
        fence("rows = [ln for ln in context.splitlines() if 'b' in ln]\nprint(len(rows))"),
        "FINAL(counted)",
        fence("n = len(rows) * 10") + "\nFINAL_VAR(n)",
    ])
    use_server(shell, srv)
    shell["doc"] = "a\nb1\nb2\nc"
    r1 = cell(shell, "--context doc --out first", "How many b lines?")
    assert r1.error_in_exec is None, r1.error_in_exec
    assert shell["first"] == "counted"
    r2 = cell(shell, "--continue --output-type int --out total", "Times ten?")
    assert r2.error_in_exec is None, r2.error_in_exec
    assert shell["total"] == 20 and isinstance(shell["total"], int)
    assert shell["total_run"].answer == "20"
    capsys.readouterr()
    shell.run("%rlm sessions")
    table = capsys.readouterr().out
    assert "(last)" in table and " 2 " in table


def test_named_sessions_pull_end_and_errors(shell, server_factory, capsys):
    srv = server_factory(root=[
        fence("top = context.groupby('k', as_index=False)['v'].sum()"), "FINAL(made)",
        fence("try:\n    print(top)\nexcept NameError:\n    print('no top here')"), "FINAL(probed)",
    ])
    use_server(shell, srv)
    shell["df"] = pd.DataFrame({"k": ["a", "b", "a"], "v": [1, 2, 3]})
    assert cell(shell, "--context df --session sales", "make top").error_in_exec is None
    assert cell(shell, "--context df --session other", "probe").error_in_exec is None
    assert "no top here" in shell["_rlm"].trajectory.turns[0].code[0].stdout
    shell.run("%rlm pull top --as local_top --session sales")
    assert shell["local_top"].to_dict("records") == [{"k": "a", "v": 4}, {"k": "b", "v": 2}]
    capsys.readouterr()
    shell.run("%rlm pull top --session sales --max-chars 5")
    assert "over the 5 limit" in capsys.readouterr().err
    shell.run("%rlm end sales")
    assert "Session 'sales' closed" in capsys.readouterr().out
    shell.run("%rlm pull top --session sales")
    assert "no open session named 'sales'" in capsys.readouterr().err
    r = cell(shell, "--continue --session sales", "again?")
    assert r.error_in_exec is not None
    assert "no open session named 'sales'" in str(r.error_in_exec)


def test_tools_and_export_from_the_notebook(shell, server_factory, tmp_path, capsys):
    srv = server_factory(root=[fence("print(double(21))"), "FINAL(42)"])
    use_server(shell, srv)
    shell.run("def double(x):\n    'Twice x.'\n    return 2 * x")
    shell["txt"] = "abc"
    r = cell(shell, "--context txt --tools double --out ans", "double 21")
    assert r.error_in_exec is None, r.error_in_exec
    run = shell["ans_run"]
    assert run.tool_calls == 1 and "42" in run.trajectory.turns[0].code[0].stdout
    target = tmp_path / "out.ipynb"
    capsys.readouterr()
    shell.run(f"%rlm export {run.run_id} --to {target}")
    assert f"Wrote {target}" in capsys.readouterr().out and target.exists()
    other = tmp_path / "cli.ipynb"
    code = cli.main(["export", run.run_id, "--to", str(other), "--log-dir",
                     shell.magics.log_dir])
    assert code == 0 and other.exists()
    r = cell(shell, "--context txt --tools nothing_here", "q")
    assert "no function named 'nothing_here'" in str(r.error_in_exec)
    r = cell(shell, "--context txt --output-type NoSuchType", "q")
    assert "--output-type NoSuchType: NameError" in str(r.error_in_exec)
    assert os.path.exists(target)
