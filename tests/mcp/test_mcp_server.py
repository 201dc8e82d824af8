"""`rlm mcp` over stdio and streamable HTTP: a run with progress, logs and replay, a cancel
that stops the run, and paths outside the roots refused."""

from __future__ import annotations

import json
import time

import anyio
import pytest


def fence(code: str) -> str:
    return f"```repl\n{code}\n```"


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("alpha\nThe launch code is 7421.\nomega\n")
    (folder / "more.txt").write_text("nothing here\n")
    return folder


def _payload(result) -> dict:
    assert not result.is_error, result.content
    if result.structured_content:
        return result.structured_content.get("result", result.structured_content)
    return json.loads(result.content[0].text)


def run(coro_fn):
    return anyio.run(coro_fn)


def test_a_run_with_progress_logs_and_replay(server_factory, connect, root):
    srv = server_factory(
        root=lambda req: [fence("print(llm_query_batched([context['notes.txt'], "
                                "context['more.txt']]))"), "FINAL(7421)"][req.turn - 1],
        sub=lambda prompt, req: "7421" if "7421" in prompt else "none")
    progress: list[tuple[float, str]] = []

    async def on_progress(value, total, message):
        progress.append((value, message))

    async def main():
        async with connect(srv, root) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"rlm_run", "rlm_logs", "rlm_replay"} <= names
            result = await client.call_tool(
                "rlm_run", {"question": "What is the launch code?",
                            "context_paths": ["notes.txt", str(root / "more.txt")]},
                progress_callback=on_progress)
            payload = _payload(result)
            logs = await client.call_tool("rlm_logs", {"limit": 5})
            replay = await client.call_tool("rlm_replay", {"run_id": payload["run_id"]})
            return payload, logs, replay

    payload, logs, replay = run(main)
    assert payload["answer"] == "7421"
    assert payload["status"] == "ok"
    assert payload["summary"].startswith("ok: 2 turns, 2 sub-calls")
    messages = [m for _, m in progress]
    assert "turn 1 started" in messages and "turn 2 started" in messages
    assert sum("sub-call to" in m for m in messages) == 2
    assert any("code block 1 ran (ok" in m for m in messages)
    assert [v for v, _ in progress] == sorted(v for v, _ in progress)  # increasing
    assert payload["run_id"] in logs.content[0].text
    text = replay.content[0].text
    assert payload["run_id"] in text and "7421" in text
    assert len(srv.requests.subs()) == 2


def test_cancel_from_the_client_stops_the_run(server_factory, connect, root):
    # The sub-call would take a minute: only a cancel ends the run early.
    srv = server_factory(root=lambda req: [fence("print(llm_query(context))"),
                                           "FINAL(late)"][req.turn - 1],
                         sub=lambda prompt, req: "slow", latency_s=lambda req:
                         60.0 if req.kind == "sub" else 0.0)

    async def main():
        async with connect(srv, root) as client:
            started = anyio.Event()

            async def on_progress(value, total, message):
                if message == "turn 1 started":
                    started.set()

            async with anyio.create_task_group() as tg:
                async def call():
                    await client.call_tool("rlm_run", {"question": "q",
                                                       "context_paths": ["notes.txt"]},
                                           progress_callback=on_progress)
                    raise AssertionError("the call was not cancelled")

                tg.start_soon(call)
                with anyio.fail_after(30):
                    await started.wait()
                    while srv.counters["sub"] < 1:  # the slow sub-call is in flight
                        await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 20:
                logs = (await client.call_tool("rlm_logs", {})).content[0].text
                if "cancelled" in logs:
                    return logs, time.monotonic() - t0
                await anyio.sleep(0.2)
            raise AssertionError(f"the run was not stopped: {logs}")

    logs, waited = run(main)
    assert "cancelled" in logs and waited < 20
    assert srv.counters["root"] == 1  # no turn after the cancel


def test_paths_outside_the_roots_are_refused(server_factory, connect, root, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    (root / "link.txt").symlink_to(secret)
    srv = server_factory(root=lambda req: "FINAL(no)")

    async def main():
        out = {}
        async with connect(srv, root) as client:
            for raw in ("../secret.txt", str(secret), "link.txt", "/etc/passwd",
                        "sub/../../secret.txt"):
                out[raw] = await client.call_tool("rlm_run", {"question": "q",
                                                              "context_paths": [raw]})
            out["missing"] = await client.call_tool("rlm_run", {"question": "q",
                                                                "context_paths": ["nope.txt"]})
        return out

    out = run(main)
    for raw in ("../secret.txt", str(secret), "link.txt", "/etc/passwd", "sub/../../secret.txt"):
        assert out[raw].is_error, raw
        text = out[raw].content[0].text
        assert "Refused:" in text and str(root) in text and "--root" in text, text
    assert out["missing"].is_error and "No such file" in out["missing"].content[0].text
    assert srv.counters["requests"] == 0  # nothing was sent to the model
