"""The live view in a real JupyterLab, driven by headless Debian chromium through playwright.

Checks what a user sees: the tree, counters and answer appear *while* a run is going, the
kernel interrupt (■) stops a run and leaves the partial view, and the Stop button cancels a
``--background`` run. Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("RLM_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
TOKEN = "rlm-browser-test"


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python playwright not installed (pip install playwright)"
    if shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) is None:
        return "jupyterlab not installed in this environment"
    return None


@pytest.fixture(scope="module", autouse=True)
def _require_browser() -> None:
    reason = _missing()
    if reason:
        if os.environ.get("RLM_CI") == "1":
            pytest.fail(f"browser test required in CI: {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cell(source: str) -> dict:
    return {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
            "source": source}


NOTEBOOK_CELLS = [
    # 0: setup: a demo server with some latency so the run is visibly live.
    """%load_ext rlm
import time
from rlm_jupyter.testing import ScriptedServer
from rlm_jupyter.jupyter.magics import get_magics
from rlm_jupyter.demo import make_document, QUESTION
demo = ScriptedServer.demo(latency_s=0.4).start()
BATCH = "```repl\\nparts = llm_query_batched(['part %d' % i for i in range(6)])\\nprint(parts)\\n```"
slow = ScriptedServer(root=lambda req: BATCH if req.turn == 1 else "FINAL(never)",
                      sub=lambda prompt, req: (time.sleep(8), 'late')[1], strict=False).start()
m = get_magics()
m.model, m.api_base, m.api_key = demo.model, demo.base_url, 'demo'
doc = make_document(120_000)
print('ready')""",
    # 1: a full run against the demo policy.
    "%%rlm --context doc --out code\nWhat is the access code for the vault in building 7?",
    # 2: switch to the slow server.
    "m.api_base = slow.base_url\nprint('slow')",
    # 3: a run we interrupt with the kernel's interrupt.
    "%%rlm --context doc --out cut\nThis run will be interrupted.",
    # 4: a background run stopped with the Stop button.
    "%%rlm --context doc --out bg --background\nThis run will be stopped.",
    # 5: 2,000 sub-calls streamed from a thread into a live view, as fast as Python can.
    """import threading
from rlm_jupyter.engine import events as ev
from rlm_jupyter.jupyter.widget import RunWidget
big = RunWidget(live=True)
display(big)
def feed():
    big(ev.RunStarted(run_id='big', question='2000 sub-calls', model='m', limits={'max_subcalls': 2500}))
    big(ev.TurnStarted(run_id='big', turn=1))
    big(ev.ModelResponse(run_id='big', turn=1, text='map', prompt_tokens=10, completion_tokens=5))
    for i in range(2000):
        big(ev.SubCallStarted(run_id='big', turn=1, span_id=f's{i}', prompt_preview=f'prompt {i}'))
        big(ev.SubCallFinished(run_id='big', turn=1, span_id=f's{i}', response_preview=f'answer {i}',
                               prompt_tokens=100, completion_tokens=3, latency_s=0.01))
    big(ev.RunFinished(run_id='big', answer='all **2000** done', turns=1, subcalls=2000))
    big.finish()
threading.Thread(target=feed).start()""",
]

# A run whose child RLM finishes at once while its root's sub-calls take seconds: time for the
# user to open and close nodes before the end-of-run refresh.
PLACES_CELLS = [
    """%load_ext rlm
import time
from rlm_jupyter.testing import ScriptedServer
from rlm_jupyter.jupyter.magics import get_magics
ROOT = ("```repl\\nkid = rlm_query('child task: say hi')\\n"
        "parts = llm_query_batched(['part %d' % i for i in range(3)])\\nFINAL_VAR('parts')\\n```")
srv = ScriptedServer(root={"child task": "FINAL(hi from the child)", "": ROOT},
                     sub=lambda prompt, req: (time.sleep(6), 'slow ' + prompt)[1], strict=False).start()
m = get_magics()
m.model, m.api_base, m.api_key = srv.model, srv.base_url, 'scripted'
print('ready')""",
    "%%rlm --context \"'abc'\"\nKeep my place.",
]


# A second view of a live widget opened mid-run (a re-displayed output, a reload) catches up
# with a snapshot, then follows the deltas like the first.
LATE_CELLS = [
    """import threading, time
from rlm_jupyter.engine import events as ev
from rlm_jupyter.jupyter.widget import RunWidget
slow = RunWidget(live=True)
display(slow)
def feed():
    slow(ev.RunStarted(run_id='late', question='late view', model='m'))
    slow(ev.TurnStarted(run_id='late', turn=1))
    slow(ev.ModelResponse(run_id='late', turn=1, text='looking', prompt_tokens=10))
    for i in range(60):
        slow(ev.SubCallStarted(run_id='late', turn=1, span_id=f's{i}', prompt_preview=f'p{i}'))
        slow(ev.SubCallFinished(run_id='late', turn=1, span_id=f's{i}', response_preview=f'r{i}'))
        time.sleep(0.1)
    slow(ev.RunFinished(run_id='late', answer='late **done**', turns=1, subcalls=60))
    slow.finish()
threading.Thread(target=feed).start()""",
    "time.sleep(2)\ndisplay(slow)",
]

# The notebook of tests/browser/test_static_offline.py: in JupyterLab the live widget shows and
# the static view beside it (for nbconvert and GitHub) stays hidden.
STATIC_CELLS = [
    "%load_ext rlm\n%rlm demo\nfrom rlm_jupyter.demo import make_document\n"
    "doc = make_document(50_000)",
    "%%rlm --context doc --out code\nWhat is the access code for the vault in building 7?",
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("lab")
    for name, cells in (("live.ipynb", NOTEBOOK_CELLS), ("places.ipynb", PLACES_CELLS),
                        ("static.ipynb", STATIC_CELLS), ("late.ipynb", LATE_CELLS)):
        nb = {"cells": [_cell(src) for src in cells], "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                           "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
        (work / name).write_text(json.dumps(nb))
    # Isolated settings: render every cell (no virtual scrolling), no news popup.
    settings = work / "settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        '{"windowingMode": "none"}')
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    port = _free_port()
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True",
               RLM_LOG_DIR=str(work / "runs"), JUPYTER_CONFIG_DIR=str(work / "cfg"),
               JUPYTER_RUNTIME_DIR=str(work / "rt"))
    for name in ("RLM_MODEL", "RLM_API_BASE", "RLM_API_KEY"):
        env.pop(name, None)
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={work}",
         "--ServerApp.open_browser=False", "--allow-root",
         f"--LabApp.user_settings_dir={work / 'settings'}",
         f"--LabApp.workspaces_dir={work / 'workspaces'}"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    import urllib.request

    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("jupyter lab exited: " + (work / "lab.log").read_text()[-2000:])
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("jupyter lab did not start within 120 s")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=False)


PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
CELLS = PANEL + " .jp-Cell"


def _cell_at(page, index: int):
    return page.locator(CELLS).nth(index)


def _widget_shot(page, widget, name: str) -> None:
    """Just the live view (its top part), for the README."""
    ARTIFACTS.mkdir(exist_ok=True)
    widget.evaluate("el => el.scrollIntoView({block: 'start'})")
    box = widget.bounding_box()
    view = page.viewport_size
    if box is None or view is None:
        return
    top = max(box["y"], 0)
    height = min(box["height"], view["height"] - top - 30)
    page.screenshot(path=str(ARTIFACTS / name),
                    clip={"x": box["x"], "y": top, "width": box["width"], "height": height})


def _run_cell(page, index: int) -> None:
    cell = _cell_at(page, index)
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")


def _widget(page, n: int):
    return page.locator(PANEL + " .rlm-w").nth(n)


@contextlib.contextmanager
def _notebook(lab: str, name: str) -> Iterator:
    """A headless chromium page on ``name`` with its kernel idle; on failure a screenshot and
    the browser console go to ``artifacts/``."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(120_000)
        console: list[str] = []
        page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
        try:
            page.goto(f"{lab}/lab/tree/{name}?token={TOKEN}")
            page.locator(CELLS).first.wait_for()
            # Kernel ready: the status bar says Idle.
            expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=120_000)
            time.sleep(2)  # the kernel connection settles after the first Idle
            yield page
        except Exception:
            _shot(page, "failure.png")
            (ARTIFACTS / "browser_console.log").write_text("\n".join(console))
            raise
        finally:
            browser.close()


def test_live_view_interrupt_and_stop(lab: str) -> None:
    from playwright.sync_api import expect

    with _notebook(lab, "live.ipynb") as page:
        _run_cell(page, 0)
        expect(_cell_at(page, 0).locator(".jp-OutputArea")).to_contain_text("ready", timeout=120_000)

        # --- live run: counters and tree appear while it is running --------------------
        _run_cell(page, 1)
        w = _widget(page, 0)
        expect(w.locator(".rlm-status")).to_have_text("running", timeout=60_000)
        expect(w.locator(".rlm-turn").first).to_be_visible()
        expect(w.locator(".rlm-c-subcalls")).to_contain_text(re.compile(r"[1-9]\d* sub-calls"), timeout=60_000)
        assert w.locator(".rlm-status").inner_text() in ("running", "ok")
        _shot(page, "live_view_running.png")
        _widget_shot(page, w, "live_view_widget_running.png")
        expect(w.locator(".rlm-status")).to_have_text("ok", timeout=120_000)
        # The cell ends by refreshing its output with the static fallbacks: wait for that.
        expect(_cell_at(page, 1).locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"))
        time.sleep(1)
        w = _widget(page, 0)
        expect(w.locator(".rlm-answer")).to_contain_text("4921-ALPHA")
        expect(w.locator(".rlm-turns")).to_contain_text("Turn 3")
        expect(w.locator(".rlm-src:visible").first).to_be_visible()  # highlighted code
        assert int(w.locator(".rlm-turns .rlm-turn").count()) >= 3
        # Earlier turns are folded; open turn 2, its sub-call list and one sub-call.
        w.locator(".rlm-turn > summary").nth(1).click()
        subs = w.locator("details.rlm-subs:visible > summary").first
        subs.click()
        expect(w.locator(".rlm-sub").first).to_be_visible()
        w.locator(".rlm-sub summary").first.click()
        _shot(page, "live_view_done.png")

        # --- kernel interrupt mid-run: partial view kept ----------------------------------
        _run_cell(page, 2)
        _run_cell(page, 3)
        w2 = _widget(page, 1)
        expect(w2.locator(".rlm-c-subcalls")).to_contain_text("running", timeout=60_000)
        _shot(page, "interrupt_before.png")
        t0 = time.monotonic()
        _cell_at(page, 3).locator(".jp-InputPrompt").click()
        page.keyboard.press("Escape")
        page.keyboard.press("i")
        page.keyboard.press("i")
        expect(w2.locator(".rlm-status")).to_have_text("cancelled", timeout=45_000)
        stopped_in = time.monotonic() - t0
        cell3 = _cell_at(page, 3)
        expect(cell3.locator(".jp-OutputArea")).to_contain_text("Interrupted", timeout=20_000)
        expect(w2.locator(".rlm-turn").first).to_be_visible()  # partial trajectory shown
        _shot(page, "interrupt_partial.png")
        assert stopped_in < 10, stopped_in

        # --- background run + Stop button -------------------------------------------------
        _run_cell(page, 4)
        w3 = _widget(page, 2)
        expect(w3.locator(".rlm-c-subcalls")).to_contain_text("running", timeout=60_000)
        expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=30_000)
        w3.locator(".rlm-stop").click()
        expect(w3.locator(".rlm-status")).to_have_text("cancelled", timeout=45_000)
        _shot(page, "background_stopped.png")

        # --- 2,000 sub-calls: the view keeps up and stays responsive ----------------------
        _run_cell(page, 5)
        w4 = _widget(page, 3)
        expect(w4.locator(".rlm-c-subcalls")).to_contain_text("2000 sub-calls", timeout=60_000)
        expect(w4.locator(".rlm-status")).to_have_text("ok", timeout=60_000)
        t0 = time.monotonic()
        w4.locator("details.rlm-subs:visible > summary").first.click()
        expect(w4.locator(".rlm-sub").nth(99)).to_be_visible()
        expect(w4.locator(".rlm-more")).to_contain_text("more of 1900")
        opened_in = time.monotonic() - t0
        assert opened_in < 5, opened_in
        w4.scroll_into_view_if_needed()
        _shot(page, "two_thousand_subcalls.png")
        _widget_shot(page, w, "live_view_widget.png")


def test_open_and_closed_nodes_survive_the_end_of_run_refresh(lab: str) -> None:
    """What the user opened or closed mid-run stays so when the run ends and the view is rebuilt
    (final sync, re-displayed output); nodes left alone keep their defaults."""
    from playwright.sync_api import expect

    with _notebook(lab, "places.ipynb") as page:
        _run_cell(page, 0)
        expect(_cell_at(page, 0).locator(".jp-OutputArea")).to_contain_text("ready", timeout=120_000)
        _run_cell(page, 1)
        w = _widget(page, 0)
        turn = w.locator(".rlm-body > .rlm-run > .rlm-turns > .rlm-turn").first
        child = w.locator("details.rlm-child").first
        subs = turn.locator(":scope > details.rlm-subs")
        expect(child).to_contain_text("ok", timeout=60_000)  # the child run is done, open
        expect(subs).to_contain_text("3 sub-calls", timeout=60_000)  # sleeping 6 s each
        # Mid-run: close the child run (open by default), open the sub-call list and its
        # first sub-call (closed by default).
        child.locator(":scope > summary").click()
        subs.locator(":scope > summary").click()
        subs.locator(".rlm-sub > summary").first.click()
        expect(w.locator(".rlm-status")).to_have_text("running")  # before the refresh
        expect(child).to_have_js_property("open", False)
        expect(subs).to_have_js_property("open", True)

        expect(w.locator(".rlm-status")).to_have_text("ok", timeout=120_000)
        expect(_cell_at(page, 1).locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"))
        time.sleep(1)
        expect(w.locator(".rlm-answer")).to_contain_text("slow part 0")
        _shot(page, "kept_places.png")
        expect(child).to_have_js_property("open", False)
        expect(subs).to_have_js_property("open", True)
        expect(subs.locator(".rlm-sub").nth(0)).to_have_js_property("open", True)
        expect(subs.locator(".rlm-sub").nth(0)).to_contain_text("slow part 0")
        expect(subs.locator(".rlm-sub").nth(1)).to_have_js_property("open", False)  # untouched
        expect(turn).to_have_js_property("open", True)  # untouched


def test_lab_shows_the_live_widget_and_not_the_static_view(lab: str) -> None:
    """The static view a %%rlm cell also carries (what nbconvert's HTML and GitHub show) is in
    the page but hidden where the live widget renders: one view of the run, not two."""
    from playwright.sync_api import expect

    with _notebook(lab, "static.ipynb") as page:
        _run_cell(page, 0)
        expect(_cell_at(page, 0).locator(".jp-OutputArea")).to_contain_text("demo",
                                                                          timeout=120_000)
        _run_cell(page, 1)
        cell = _cell_at(page, 1)
        expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"),
                                                             timeout=120_000)
        time.sleep(1)
        w = cell.locator(".rlm-w")
        expect(w).to_have_count(1)
        expect(w.locator(".rlm-status")).to_have_text("ok")
        expect(w.locator(".rlm-answer")).to_contain_text("4921-ALPHA")
        static = cell.locator(".rlm-static-beside")
        expect(static).to_have_count(1)
        expect(static.locator(".rlm-static")).to_have_count(1)  # the run's view arrived...
        expect(static).to_be_hidden()  # ...and is not shown twice
        expect(cell.locator(".jp-OutputArea-child:has(.rlm-static-beside)")).to_be_hidden()
        expect(cell.get_by_text("4921-ALPHA", exact=False).locator("visible=true")).to_have_count(1)
        _shot(page, "lab_static_hidden.png")


def test_a_view_opened_mid_run_catches_up(lab: str) -> None:
    from playwright.sync_api import expect

    with _notebook(lab, "late.ipynb") as page:
        _run_cell(page, 0)
        first = _widget(page, 0)
        expect(first.locator(".rlm-c-subcalls")).to_contain_text("sub-calls", timeout=60_000)
        _run_cell(page, 1)
        second = _widget(page, 1)
        # It missed the first deltas: it must show the turn and the sub-calls so far at once.
        expect(second.locator(".rlm-turn").first).to_be_visible(timeout=30_000)
        expect(second.locator(".rlm-status")).to_have_text("running")
        for w in (first, second):
            expect(w.locator(".rlm-status")).to_have_text("ok", timeout=60_000)
            expect(w.locator(".rlm-c-subcalls")).to_contain_text("60 sub-calls")
            expect(w.locator(".rlm-answer strong")).to_have_text("done")
        second.locator("details.rlm-subs > summary").first.click()
        expect(second.locator(".rlm-sub")).to_have_count(60)
        _shot(page, "late_view.png")
