"""RLM.map on the thread pool, over real HTTP to the scripted server."""

from __future__ import annotations

import gc
import threading
import time

import pandas as pd
import pytest

from rlm_jupyter import errors
from rlm_jupyter.engine import batch

from map_helpers import doc


def test_list_keys_are_positions_and_rows_are_complete(map_server, map_rlm):
    srv = map_server()
    result = map_rlm(srv).map("What is the code?", [doc(11), doc(22), doc(33)])
    assert [r.answer for r in result] == ["11", "22", "33"]
    df = result.to_pandas()
    assert list(df["key"]) == [0, 1, 2]
    assert set(batch.RESULT_FIELDS) <= set(df.columns)
    assert (df["status"] == "ok").all() and df["output"].isna().all()
    assert (df["total_tokens"] > 0).all() and df["run_id"].notna().all()
    assert all(p and p.endswith(".jsonl") for p in df["log_path"])
    # two root turns and one sub-call batch per item
    assert len(srv.requests.roots()) == 6


def test_dict_series_and_dataframe_rows(map_server, map_rlm):
    srv = map_server()
    rlm = map_rlm(srv)
    by_dict = rlm.map("Code of {key}?", {"north": doc(1), "south": doc(2)})
    assert [(r.key, r.answer) for r in by_dict] == [("north", "1"), ("south", "2")]
    assert by_dict.by_key("south").question == "Code of south?"

    series = pd.Series([doc(5), doc(6)], index=["a", "b"])
    by_series = rlm.map("Code?", series, concurrency=1)
    assert by_series.to_pandas()[["key", "answer"]].values.tolist() == [["a", "5"], ["b", "6"]]

    frame = pd.DataFrame({"team": ["red", "blue"], "notes": [doc(7), doc(8)]})
    by_rows = rlm.map("What is the code for team {team}? {not_a_column} stays", frame)
    assert by_rows.answers == ["7", "8"]
    assert by_rows[1].question == "What is the code for team blue? {not_a_column} stays"
    assert by_rows[0].key == 0


def test_glob_and_directory_one_item_per_file(map_server, map_rlm, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in (3, 4):
        (folder / f"r{n}.txt").write_text(doc(n))
    (folder / "skip.md").write_text("not matched")
    srv = map_server()
    rlm = map_rlm(srv)
    by_glob = rlm.map("Code?", str(folder / "*.txt"))
    assert [(r.key.rsplit("/", 1)[-1], r.answer) for r in by_glob] == [("r3.txt", "3"),
                                                                       ("r4.txt", "4")]
    by_dir = rlm.map("Code?", folder)
    assert len(by_dir) == 3
    with pytest.raises(errors.ConfigError, match="No files match"):
        rlm.map("Code?", str(tmp_path / "nothing-*.txt"))


def test_a_failing_item_never_stops_the_others(map_server, map_rlm):
    srv = map_server()
    result = map_rlm(srv, num_retries=0).map(
        "Code of {key}?", {"good1": doc(1), "bad": doc(2), "good2": doc(3),
                           "unsendable": (x for x in [])})
    rows = {r.key: r for r in result}
    assert rows["good1"].answer == "1" and rows["good2"].answer == "3"
    assert rows["bad"].status == "error" and rows["bad"].error
    assert rows["unsendable"].status == "error" and rows["unsendable"].error_type == "ConfigError"
    assert result.counts() == {"ok": 2, "error": 2, "cancelled": 0}


def test_total_token_budget_cuts_the_map(map_server, map_rlm):
    srv = map_server()
    rlm = map_rlm(srv)
    one = rlm.map("Code?", [doc(1)])[0].total_tokens
    assert one > 0
    result = rlm.map("Code?", [doc(n) for n in range(5)], concurrency=1,
                     max_total_tokens=int(one * 1.5))
    statuses = [r.status for r in result]
    assert statuses[0] == "ok"
    assert statuses[2:] == ["error"] * 3
    for r in result.results[2:]:
        assert r.error_type == "TokenLimitExceeded" and "Map budget spent" in r.error
        assert r.total_tokens == 0  # never started
    assert result.total_tokens <= one * 1.5 + one  # at most one call past the line


def test_resume_skips_items_already_done(map_server, map_rlm, tmp_path):
    srv = map_server()
    rlm = map_rlm(srv)
    path = tmp_path / "results.jsonl"
    first = rlm.map("Code of {key}?", {"a": doc(1), "b": doc(2), "bad": doc(3)}, resume=path)
    assert first.results_path == path and first.counts()["ok"] == 2
    roots_before = len(srv.requests.roots())
    second = rlm.map("Code of {key}?", {"a": doc(1), "b": doc(2), "c": doc(4)}, resume=path)
    rows = {r.key: r for r in second}
    assert rows["a"].resumed and rows["b"].resumed and not rows["c"].resumed
    assert rows["a"].answer == "1" and rows["c"].answer == "4"
    assert len(srv.requests.roots()) - roots_before == 2  # only item c ran
    # the default results file lives beside the logs; resume=True reads it
    rlm.map("Code?", [doc(9)])
    again = rlm.map("Code?", [doc(9)], resume=True)
    assert again[0].resumed and again.results_path.parent.name == "maps"


def test_typed_outputs_fill_the_output_column(map_server, map_rlm):
    srv = map_server()
    rlm = map_rlm(srv)
    if not batch.typed_outputs_available():  # an engine without typed answers says so
        with pytest.raises(errors.ConfigError, match="Typed outputs are not available yet"):
            rlm.map("Code?", [doc(1)], output_type=int)
        return
    result = rlm.map("Code?", {"a": doc(11), "b": doc(22)}, output_type=int)
    assert result.to_pandas()["output"].tolist() == [11, 22]


def test_events_reach_on_event_in_order(map_server, map_rlm):
    srv = map_server()
    seen = []
    map_rlm(srv).map("Code?", [doc(1), doc(2)], on_event=seen.append)
    kinds = [e.type for e in seen]
    assert kinds[0] == "map_started" and kinds[-1] == "map_finished"
    assert kinds.count("item_started") == 2 and kinds.count("item_finished") == 2
    assert any(e.type == "item_progress" and e.tokens > 0 for e in seen)


def test_cancel_a_running_map_leaks_no_sandbox_or_thread(map_server, map_rlm):
    from rlm_jupyter.sandbox import local

    srv = map_server(latency_s=lambda req: 0.5 if req.kind == "sub" else 0.0)
    cancel = threading.Event()
    started = []

    def on_event(event):
        if event.type == "item_started":
            started.append(event)
            cancel.set()

    t0 = time.monotonic()
    result = map_rlm(srv).map("Code?", [doc(n) for n in range(6)], concurrency=2,
                              cancel=cancel, on_event=on_event)
    assert time.monotonic() - t0 < 15
    assert result.cancelled
    assert result.counts()["cancelled"] >= 4
    assert all(r.status in ("ok", "cancelled") for r in result)
    gc.collect()
    assert len(local._LIVE) == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("rlm-map")]


def test_ctrl_c_in_a_script_stops_the_items_then_propagates(map_server, map_rlm, tmp_path):
    from rlm_jupyter.sandbox import local

    srv = map_server(latency_s=lambda req: 0.5 if req.kind == "sub" else 0.0)
    path = tmp_path / "rows.jsonl"

    def on_event(event):
        if event.type == "item_started":
            raise KeyboardInterrupt  # what Ctrl-C does to the driver thread

    with pytest.raises(KeyboardInterrupt):
        map_rlm(srv).map("Code?", [doc(n) for n in range(4)], concurrency=2, resume=path,
                         on_event=on_event)
    gc.collect()
    assert len(local._LIVE) == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("rlm-map")]
    assert len(path.read_text().splitlines()) == 4  # every row written, all cancelled


def test_any_executor_a_process_pool(map_server, map_rlm):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    srv = map_server()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = map_rlm(srv).map("Code of {key}?", {"a": doc(1), "b": doc(2), "bad": doc(3)},
                                  executor=pool)
    assert [(r.key, r.status, r.answer) for r in result] == [
        ("a", "ok", "1"), ("b", "ok", "2"), ("bad", "error", None)]
