"""%%rlm --map in a real InteractiveShell, and the grid's folding, throttling and views."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

from map_helpers import doc


@pytest.fixture
def ip(tmp_path, monkeypatch):
    for name in ("RLM_MODEL", "RLM_API_BASE", "RLM_API_KEY", "RLM_SUB_MODEL", "RLM_SANDBOX"):
        monkeypatch.delenv(name, raising=False)
    shell = InteractiveShell.instance()
    from rlm_jupyter.jupyter.magics import get_magics

    if get_magics(shell) is None:
        shell.run_line_magic("load_ext", "rlm_jupyter")
    magics = get_magics(shell)
    shell.run_line_magic("rlm", "config --reset")
    magics.log_dir = str(tmp_path / "runs")
    magics.display = "text"
    yield shell
    magics.close()


def use(shell, srv):
    from rlm_jupyter.jupyter.magics import get_magics

    m = get_magics(shell)
    m.model, m.api_base, m.api_key = srv.model, srv.base_url, "scripted"


def test_map_cell_fills_a_dataframe(ip, map_server, capsys):
    srv = map_server()
    use(ip, srv)
    ip.user_ns["tickets"] = pd.DataFrame({"team": ["red", "blue"], "body": [doc(4), doc(5)]})
    ip.user_ns["suffix"] = "please"
    res = ip.run_cell("%%rlm --map tickets --out df\nWhat is the code for team {team}, {suffix}?",
                      store_history=False)
    assert res.error_in_exec is None, res.error_in_exec
    df = ip.user_ns["df"]
    assert list(df["answer"]) == ["4", "5"]
    assert ip.user_ns["df_map"][1].question == "What is the code for team blue, please?"
    assert ip.user_ns["_rlm_map"] is ip.user_ns["df_map"]
    out = capsys.readouterr().out
    assert "[ok] 0: 4" in out and "2/2 done" in out


def test_map_cell_over_a_glob_and_a_bad_expression(ip, map_server, tmp_path, capsys):
    srv = map_server()
    use(ip, srv)
    for n in (1, 2):
        (tmp_path / f"f{n}.txt").write_text(doc(n))
    res = ip.run_cell(f"%%rlm --map '{tmp_path}/*.txt' --out rows -q\nCode?",
                      store_history=False)
    assert res.error_in_exec is None, res.error_in_exec
    assert sorted(ip.user_ns["rows"]["answer"]) == ["1", "2"]
    res = ip.run_cell("%%rlm --map no_such_variable\nCode?", store_history=False)
    assert res.error_in_exec is not None
    assert "not a notebook expression" in str(res.error_in_exec)


def _events(n: int):
    from rlm_jupyter.engine import batch

    keys = [f"k{i}" for i in range(n)]
    yield batch.MapStarted(question="q", keys=keys)
    for i in range(n):
        yield batch.ItemStarted(index=i)
        yield batch.ItemProgress(index=i, tokens=10, cost_usd=0.001)
        yield batch.ItemFinished(index=i, result=batch.ItemResult(
            index=i, key=keys[i], question="q", answer=str(i),
            status="ok" if i % 7 else "error", error=None if i % 7 else "boom",
            total_tokens=20, cost_usd=0.002, elapsed_s=0.1))


def test_grid_of_1000_items_is_throttled_and_has_static_views():
    from rlm_jupyter.engine import batch
    from rlm_jupyter.jupyter.grid import MapGrid

    grid = MapGrid(live=True, max_rate=10)
    sent = []
    grid.send = lambda msg, buffers=None: sent.append(msg)  # no frontend here: record deltas
    t0 = time.monotonic()
    events = list(_events(1000))
    for event in events:
        grid(event)
    fold_s = time.monotonic() - t0
    time.sleep(0.25)
    assert fold_s < 2.0  # 4,000 events folded; rendering waits for the timer
    assert len(sent) <= 1 + int((time.monotonic() - t0) * 10) + 1
    result = batch.MapResult("q", [e.result for e in events
                                   if isinstance(e, batch.ItemFinished)], elapsed_s=1.0)
    grid(batch.MapFinished(result=result))
    assert not grid.live and len(grid.snapshot["cells"]) == 1000
    total = grid.snapshot["total"]
    assert total["done"] == 1000 and total["error"] == 143 and total["eta"] is None
    cells = {}
    for msg in sent:
        cells.update(msg["cells"])
    assert len(cells) == 1000 and cells["7"]["s"] == "error"
    assert "1000/1000 done" in repr(grid)
    bundle = result._repr_mimebundle_()
    assert "857 ok" in bundle["text/plain"] and "<table>" in bundle["text/html"]
    assert "first 50 items" in bundle["text/html"]
    assert "k7" in grid.trajectory_html(7) and "boom" in grid.trajectory_html(7)


def test_grid_stop_sets_the_maps_cancel_flag():
    from rlm_jupyter.jupyter.grid import MapGrid

    cancel = threading.Event()
    grid = MapGrid(live=True, cancel=cancel)
    grid._on_frontend_msg(grid, {"kind": "stop"}, [])
    assert cancel.is_set() and grid.stop_requested
