"""RLM.map on a Dask LocalCluster with worker processes: same answers as on threads."""

from __future__ import annotations

import threading
import time

import pytest

from map_helpers import doc

distributed = pytest.importorskip("distributed", reason="pip install 'rlm-jupyter[dask]'")


@pytest.fixture(scope="module")
def dask_client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                           dashboard_address=None, silence_logs=40)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_map_matches_threads_and_streams_progress(map_server, map_rlm, dask_client):
    srv = map_server()
    rlm = map_rlm(srv)
    contexts = {f"r{n}": doc(n) for n in range(4)}
    contexts["bad"] = doc(99)
    on_threads = rlm.map("Code of {key}?", contexts)
    seen = []
    on_dask = rlm.map("Code of {key}?", contexts, executor=dask_client, on_event=seen.append)
    assert [(r.key, r.status, r.answer) for r in on_dask] == \
        [(r.key, r.status, r.answer) for r in on_threads]
    assert on_dask.by_key("r3").answer == "3"
    assert on_dask.by_key("r1").trajectory is not None  # came back with the future
    kinds = [e.type for e in seen]
    assert kinds.count("item_finished") == 5
    assert "item_started" in kinds  # through Worker.log_event -> Client.subscribe_topic
    # every item ran on a worker process: the workers' pids are not ours
    pids = {pid for pid in dask_client.run(lambda: __import__("os").getpid()).values()}
    assert len(pids) == 2


def test_cancelled_dask_map_cancels_its_futures(map_server, map_rlm, dask_client):
    srv = map_server(latency_s=lambda req: 1.0 if req.kind == "sub" else 0.0)
    cancel = threading.Event()

    def on_event(event):
        if event.type == "item_started":
            cancel.set()

    result = map_rlm(srv).map("Code?", [doc(n) for n in range(8)], executor=dask_client,
                              concurrency=4, cancel=cancel, on_event=on_event)
    assert result.cancelled and result.counts()["cancelled"] >= 4
    # nothing of this map is left on the cluster: no futures (released on the client's loop,
    # so give it a moment), no running sandboxes
    deadline = time.monotonic() + 10
    while [k for k in dask_client.futures if str(k).startswith("rlm-map-")]:
        assert time.monotonic() < deadline, list(dask_client.futures)
        time.sleep(0.05)

    def live_sandboxes() -> int:
        import gc

        from rlm_jupyter.sandbox import local
        gc.collect()
        return len(local._LIVE)

    assert set(dask_client.run(live_sandboxes).values()) == {0}


def test_total_budget_on_dask_stops_starting_items(map_server, map_rlm, dask_client):
    srv = map_server()
    rlm = map_rlm(srv)
    one = rlm.map("Code?", [doc(1)])[0].total_tokens
    result = rlm.map("Code?", [doc(n) for n in range(5)], executor=dask_client, concurrency=1,
                     max_total_tokens=int(one * 1.5))
    assert result[0].status == "ok"
    assert [r.error_type for r in result.results[2:]] == ["TokenLimitExceeded"] * 3
