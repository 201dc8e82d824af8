"""``rlm`` and ``%rlm`` are two adapters over one command layer: same tables, one-line errors,
the same words about a missing model; and the new knobs reach the model on both transports."""

from __future__ import annotations

import pytest

from rlm_jupyter import RLM, cli
from rlm_jupyter.testing import ScriptedServer

from jupyter_helpers import Shell, use_server


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_rlm_logs_and_percent_rlm_logs_print_the_same_table(shell: Shell, capsys) -> None:
    with ScriptedServer(root=lambda req: "FINAL(done)") as srv:
        use_server(shell, srv)
        assert shell.run("%%rlm -o res --quiet\nWhich model ran?").success
    capsys.readouterr()
    assert shell.run("%rlm logs -n 5").success
    magic = capsys.readouterr().out
    code, terminal, _ = _cli(capsys, "logs", "-n", "5", "--log-dir", shell.magics.log_dir)
    assert code == 0 and terminal == magic
    header, row = magic.splitlines()[:2]
    for column in ("model", "retry", "tokens", "cost", "question"):
        assert column in header
    assert shell["res_run"].run_id in row and "openai/scripted" in row


@pytest.mark.parametrize("argv,needle", [
    (["logs", "-n", "many"], "-n needs a number, got 'many'"),
    (["logs", "extra"], "Unexpected 'extra'"),
    (["replay"], "Usage: `rlm replay"),
    (["replay", "no-such-run", "--log-dir", "."], "No saved run 'no-such-run'"),
    (["models", "-n", "-3"], "-n needs a number"),
    (["doctor", "--pong"], "Unexpected '--pong'"),
    (["run", "q", "--max-depth", "deep"], "invalid int value: 'deep'"),
    (["run", "q", "--model", "openai/x", "--context", "no/such/*.txt"], "No files match"),
    (["run", "q", "--model", "openai/x", "--sandbox", "vm"], "Unknown sandbox 'vm'"),
    (["config", "model=x"], "only shows the settings"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_cli_mistakes_are_one_line(capsys, monkeypatch, argv, needle) -> None:
    monkeypatch.delenv("RLM_MODEL", raising=False)
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlm: ") and needle in lines[0], lines


@pytest.mark.parametrize("line,needle", [
    ("%rlm models -n many", "-n needs a number"),
    ("%rlm doctor --pong", "Unexpected '--pong'"),
    ("%rlm config --reset model=x", "--reset takes no NAME=VALUE"),
    ("%rlm config model", "Expected NAME=VALUE"),
    ("%rlm demo --forse", "Unexpected '--forse'"),
])
def test_magic_subcommand_mistakes_are_one_line(shell: Shell, capsys, line, needle) -> None:
    assert not shell.run(line).success
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("UsageError: ") and needle in err[0], err


def test_help_of_a_subcommand_is_not_an_error(shell: Shell, capsys) -> None:
    assert shell.run("%rlm logs -h").success
    assert "-n N, --limit N" in capsys.readouterr().out
    assert cli.main(["logs", "-h"]) == 0


def test_doctor_and_run_agree_when_no_model_is_set(shell: Shell, capsys, monkeypatch) -> None:
    """The doctor used to say the demo server is used without a model, while %%rlm refuses."""
    from rlm_jupyter.settings import NO_MODEL

    assert shell.run("%rlm doctor").success
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "] model:" in ln)
    assert "[FAIL]" in line and "refuse" in line and "demo server is used" not in out
    assert NO_MODEL.split(": ", 1)[1] in out
    assert not shell.run("%%rlm\nQ?").success
    assert NO_MODEL in capsys.readouterr().err
    code, _, err = _cli(capsys, "run", "Q?")
    assert code == 2 and NO_MODEL in err


def test_doctor_ping_failure_is_one_clear_line(capsys, monkeypatch) -> None:
    monkeypatch.setenv("RLM_MODEL", "openai/gone")
    monkeypatch.setenv("RLM_API_BASE", "http://127.0.0.1:9/v1")  # nothing listens on port 9
    monkeypatch.setenv("RLM_API_KEY", "x")
    cli.main(["doctor", "--ping"])
    out = capsys.readouterr().out.splitlines()
    i = next(i for i, ln in enumerate(out) if "model reachable" in ln)
    assert out[i].startswith("[FAIL] model reachable: Could not reach the model 'openai/gone'")
    assert "Exception" not in out[i] and "Error" not in out[i] and len(out[i]) < 250
    assert out[i + 1].strip().startswith("fix: ")


def test_rlm_run_reads_files_and_prints_the_progress_log(tmp_path, capsys) -> None:
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    root = ["```repl\nprint(sorted(context))\n```", "FINAL(two files)"]
    with ScriptedServer(root=lambda req: root[req.turn - 1]) as srv:
        code, out, err = _cli(capsys, "run", "How many?", "--context", str(tmp_path / "*.txt"),
                              "--model", srv.model, "--api-base", srv.base_url,
                              "--log-dir", str(tmp_path / "runs"), "--sandbox", "inprocess",
                              "--max-total-tokens", "100000")
    assert code == 0, err
    assert out.strip() == "two files"
    assert err.startswith("▶ RLM openai/scripted") and "code #1 ok" in err and "■ ok" in err


@pytest.mark.parametrize("transport", ["http", "litellm"])
def test_max_reply_tokens_reaches_the_request_body(tmp_path, transport) -> None:
    with ScriptedServer(root=lambda req: "FINAL(ok)") as srv:
        rlm = RLM(model=srv.model, api_base=srv.base_url, api_key="scripted", transport=transport,
                  sandbox="inprocess", log_dir=str(tmp_path), max_reply_tokens=77,
                  max_total_tokens=50_000)
        result = rlm.run("Q?", context="c")
        assert result.error is None, result.error
        assert [r.body.get("max_tokens") for r in srv.requests] == [77]


def test_without_max_reply_tokens_no_cap_is_sent(tmp_path) -> None:
    with ScriptedServer(root=lambda req: "FINAL(ok)") as srv:
        RLM(model=srv.model, api_base=srv.base_url, api_key="scripted", transport="http",
            sandbox="inprocess", log_dir=str(tmp_path), max_total_tokens=50_000).run("Q?")
        assert "max_tokens" not in srv.requests[0].body


def test_max_total_tokens_is_the_run_budget(tmp_path) -> None:
    from rlm_jupyter.errors import TokenLimitExceeded

    root = ["```repl\nprint(1)\n```"] * 5
    with ScriptedServer(root=lambda req: root[req.turn - 1]) as srv:
        result = RLM(model=srv.model, api_base=srv.base_url, api_key="scripted",
                     sandbox="inprocess", log_dir=str(tmp_path),
                     max_total_tokens=300).run("Q?", context="c")
    assert isinstance(result.error, TokenLimitExceeded)


def test_magic_max_tokens_option_is_deprecated(shell: Shell) -> None:
    with ScriptedServer(root=lambda req: "FINAL(ok)") as srv:
        use_server(shell, srv)
        with pytest.warns(DeprecationWarning, match="max_total_tokens"):
            assert shell.run("%%rlm --max-tokens 90000 -o res --quiet\nQ?").success
        assert shell["res_run"].events[0].limits["max_tokens"] == 90000
        assert shell.run("%%rlm --max-total-tokens 80000 --max-reply-tokens 9 -o res "
                         "--quiet\nQ?").success
        assert shell["res_run"].events[0].limits["max_tokens"] == 80000
        assert srv.requests[-1].body["max_tokens"] == 9
    with pytest.warns(DeprecationWarning):
        assert shell.run("%rlm config max_tokens=5000").success
    assert shell.magics.max_total_tokens == 5000


def test_tracing_takes_content_in_a_notebook(shell) -> None:
    """tracing is True/False or "content" (prompts and outputs too): the notebook knob takes
    all three, as RLM(tracing=...) and RLM_TRACING do."""
    for value in ("content", "True", "False", "None"):
        assert shell.run(f"%rlm config tracing={value}").success, value
    assert shell.run("%rlm config tracing=content").success
    assert shell.magics.tracing == "content"
    assert not shell.run("%rlm config tracing=everything").success
