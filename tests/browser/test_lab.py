"""The live view in a real JupyterLab, driven by headless Debian chromium through playwright.

Checks what a user sees: the tree, counters and answer appear *while* a run is going, the
kernel interrupt (■) stops a run and leaves the partial view, and the Stop button cancels a
``--background`` run. Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import re
import time
from typing import Iterator

import pytest

from _lab import (ARTIFACTS, PANEL, cell_at, jupyter_lab, open_notebook, require, run_cell,
                  shot)

pytestmark = [pytest.mark.browser, pytest.mark.slow]



@pytest.fixture(scope="module", autouse=True)
def _require_browser() -> None:
    require("jupyter-lab")


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
    with jupyter_lab(tmp_path_factory.mktemp("lab"), {
            "live.ipynb": NOTEBOOK_CELLS, "places.ipynb": PLACES_CELLS,
            "static.ipynb": STATIC_CELLS, "late.ipynb": LATE_CELLS}) as url:
        yield url


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


def _widget(page, n: int):
    return page.locator(PANEL + " .rlm-w").nth(n)


def test_live_view_interrupt_and_stop(lab: str) -> None:
    from playwright.sync_api import expect

    with open_notebook(lab, "live.ipynb") as page:
        run_cell(page, 0)
        expect(cell_at(page, 0).locator(".jp-OutputArea")).to_contain_text("ready", timeout=120_000)

        # --- live run: counters and tree appear while it is running --------------------
        run_cell(page, 1)
        w = _widget(page, 0)
        expect(w.locator(".rlm-status")).to_have_text("running", timeout=60_000)
        expect(w.locator(".rlm-turn").first).to_be_visible()
        expect(w.locator(".rlm-c-subcalls")).to_contain_text(re.compile(r"[1-9]\d* sub-calls"), timeout=60_000)
        assert w.locator(".rlm-status").inner_text() in ("running", "ok")
        shot(page, "live_view_running.png")
        _widget_shot(page, w, "live_view_widget_running.png")
        expect(w.locator(".rlm-status")).to_have_text("ok", timeout=120_000)
        # The cell ends by refreshing its output with the static fallbacks: wait for that.
        expect(cell_at(page, 1).locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"))
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
        shot(page, "live_view_done.png")

        # --- kernel interrupt mid-run: partial view kept ----------------------------------
        run_cell(page, 2)
        run_cell(page, 3)
        w2 = _widget(page, 1)
        expect(w2.locator(".rlm-c-subcalls")).to_contain_text("running", timeout=60_000)
        shot(page, "interrupt_before.png")
        t0 = time.monotonic()
        cell_at(page, 3).locator(".jp-InputPrompt").click()
        page.keyboard.press("Escape")
        page.keyboard.press("i")
        page.keyboard.press("i")
        expect(w2.locator(".rlm-status")).to_have_text("cancelled", timeout=45_000)
        stopped_in = time.monotonic() - t0
        cell3 = cell_at(page, 3)
        expect(cell3.locator(".jp-OutputArea")).to_contain_text("Interrupted", timeout=20_000)
        expect(w2.locator(".rlm-turn").first).to_be_visible()  # partial trajectory shown
        shot(page, "interrupt_partial.png")
        assert stopped_in < 10, stopped_in

        # --- background run + Stop button -------------------------------------------------
        run_cell(page, 4)
        w3 = _widget(page, 2)
        expect(w3.locator(".rlm-c-subcalls")).to_contain_text("running", timeout=60_000)
        expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=30_000)
        w3.locator(".rlm-stop").click()
        expect(w3.locator(".rlm-status")).to_have_text("cancelled", timeout=45_000)
        shot(page, "background_stopped.png")

        # --- 2,000 sub-calls: the view keeps up and stays responsive ----------------------
        run_cell(page, 5)
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
        shot(page, "two_thousand_subcalls.png")
        _widget_shot(page, w, "live_view_widget.png")


def test_open_and_closed_nodes_survive_the_end_of_run_refresh(lab: str) -> None:
    """What the user opened or closed mid-run stays so when the run ends and the view is rebuilt
    (final sync, re-displayed output); nodes left alone keep their defaults."""
    from playwright.sync_api import expect

    with open_notebook(lab, "places.ipynb") as page:
        run_cell(page, 0)
        expect(cell_at(page, 0).locator(".jp-OutputArea")).to_contain_text("ready", timeout=120_000)
        run_cell(page, 1)
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
        expect(cell_at(page, 1).locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"))
        time.sleep(1)
        expect(w.locator(".rlm-answer")).to_contain_text("slow part 0")
        shot(page, "kept_places.png")
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

    with open_notebook(lab, "static.ipynb") as page:
        run_cell(page, 0)
        expect(cell_at(page, 0).locator(".jp-OutputArea")).to_contain_text("demo",
                                                                          timeout=120_000)
        run_cell(page, 1)
        cell = cell_at(page, 1)
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
        shot(page, "lab_static_hidden.png")


def test_a_view_opened_mid_run_catches_up(lab: str) -> None:
    from playwright.sync_api import expect

    with open_notebook(lab, "late.ipynb") as page:
        run_cell(page, 0)
        first = _widget(page, 0)
        expect(first.locator(".rlm-c-subcalls")).to_contain_text("sub-calls", timeout=60_000)
        run_cell(page, 1)
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
        shot(page, "late_view.png")
