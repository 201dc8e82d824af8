"""The map's live grid in a real JupyterLab, driven by headless Debian chromium (playwright).

What a user sees: cells change state while the map runs, the total line counts, clicking a
cell opens that item's trajectory, the Stop button ends a ``--background`` map, the kernel
interrupt ends a foreground one, and a grid of 1,000 items stays responsive. Screenshots go to
``artifacts/``. Lab start-up and page helpers come from _lab.py.
"""

from __future__ import annotations

import re
import time
from typing import Iterator

import pytest

from _lab import cell_at, jupyter_lab, open_notebook, require, run_cell, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETUP = """%load_ext rlm
import re, time
from rlm_jupyter.testing import ScriptedServer
from rlm_jupyter.jupyter.magics import get_magics
TURN = ("```repl\\nfound = [a for a in llm_query_batched(['Find the code in: ' + str(context)])]\\n"
        "result = found[0]\\nprint(result)\\n```")
def root(req):
    return TURN if req.turn <= 1 else "FINAL_VAR(result)"
def sub(prompt, req):
    m = re.search(r"code is (\\d+)", prompt)
    return m.group(1) if m else "NONE"
srv = ScriptedServer(root=root, sub=sub, latency_s=0.4, strict=False).start()
slow = ScriptedServer(root=root, sub=lambda p, r: (time.sleep(8), 'late')[1], strict=False).start()
m = get_magics()
m.model, m.api_base, m.api_key = srv.model, srv.base_url, 'scripted'
items = {f"doc-{i}": f"Report {i}.\\nThe code is {100 + i}.\\nEnd." for i in range(12)}
print('ready')"""

CELLS = [
    SETUP,
    # 1: a live map over 12 items, 4 at a time
    "%%rlm --map items --out rows --map-concurrency 4\nWhat is the code in {key}?",
    # 2: switch to the slow server
    "m.api_base = slow.base_url\nprint('slow')",
    # 3: a foreground map we interrupt with the kernel's interrupt
    "%%rlm --map items --out cut --map-concurrency 2\nThis map will be interrupted.",
    # 4: a background map stopped with the Stop button
    "%%rlm --map items --out bg --background --map-concurrency 2\nThis map will be stopped.",
    # 5: a grid of 1,000 items fed from a thread as fast as Python can
    """import threading
from rlm_jupyter.engine import batch
from rlm_jupyter.jupyter.grid import MapGrid
big = MapGrid(live=True)
display(big)
def feed():
    keys = [f'item-{i}' for i in range(1000)]
    big(batch.MapStarted(question='1,000 tiny items', keys=keys))
    results = []
    for i in range(1000):
        big(batch.ItemStarted(index=i))
        big(batch.ItemProgress(index=i, tokens=5, cost_usd=0.0))
        r = batch.ItemResult(index=i, key=keys[i], question='q', answer=str(i), total_tokens=10)
        results.append(r)
        big(batch.ItemFinished(index=i, result=r))
    big(batch.MapFinished(result=batch.MapResult('q', results)))
threading.Thread(target=feed).start()""",
]


@pytest.fixture(scope="module", autouse=True)
def _require_browser() -> None:
    require("jupyter-lab")


@pytest.fixture(scope="module")
def map_lab(tmp_path_factory) -> Iterator[str]:
    with jupyter_lab(tmp_path_factory.mktemp("maplab"), {"map.ipynb": CELLS}) as url:
        yield url


def _grid(page, n: int):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .rlm-map").nth(n)


def test_map_grid_live_click_interrupt_stop_and_1000_items(map_lab: str) -> None:
    from playwright.sync_api import expect

    with open_notebook(map_lab, "map.ipynb") as page:
        run_cell(page, 0)
        expect(cell_at(page, 0).locator(".jp-OutputArea")).to_contain_text("ready",
                                                                           timeout=120_000)
        # --- live: cells turn running then ok while the total line counts ----------------
        run_cell(page, 1)
        g = _grid(page, 0)
        expect(g.locator(".rlm-map-cell")).to_have_count(12, timeout=60_000)
        expect(g.locator(".rlm-map-cell.rlm-map-s-running").first).to_be_visible(timeout=60_000)
        expect(g.locator(".rlm-map-total")).to_contain_text("running")
        assert g.locator(".rlm-map-cell.rlm-map-s-queued").count() > 0  # 4 at a time
        shot(page, "map_grid_running.png")
        expect(g.locator(".rlm-map-total")).to_contain_text("12/12 done", timeout=120_000)
        expect(g.locator(".rlm-map-cell.rlm-map-s-ok")).to_have_count(12)
        expect(cell_at(page, 1).locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"))
        # the static table beside the grid (for nbconvert/GitHub) is hidden where it renders
        assert cell_at(page, 1).locator(".rlm-map-static:visible").count() == 0
        # --- click a cell: its trajectory (render.py's HTML) opens below the grid ----------
        g.locator(".rlm-map-cell").nth(3).click()
        detail = g.locator(".rlm-map-detail")
        expect(detail).to_contain_text("doc-3")
        expect(detail.locator(".rlm-static")).to_contain_text("103", timeout=30_000)
        shot(page, "map_grid_trajectory.png")

        # --- kernel interrupt of a foreground map: rows kept, nothing left running ----------
        run_cell(page, 2)
        expect(cell_at(page, 2).locator(".jp-OutputArea")).to_contain_text("slow")
        run_cell(page, 3)
        g2 = _grid(page, 1)
        expect(g2.locator(".rlm-map-cell.rlm-map-s-running").first).to_be_visible(timeout=60_000)
        t0 = time.monotonic()
        cell_at(page, 3).locator(".jp-InputPrompt").click()
        page.keyboard.press("Escape")
        page.keyboard.press("i")
        page.keyboard.press("i")
        expect(cell_at(page, 3).locator(".jp-OutputArea")).to_contain_text(
            "Interrupted", timeout=60_000)
        assert time.monotonic() - t0 < 30
        expect(g2.locator(".rlm-map-total")).to_contain_text("cancelled", timeout=30_000)
        expect(g2.locator(".rlm-map-cell.rlm-map-s-running")).to_have_count(0)

        # --- Stop button on a background map ------------------------------------------------
        run_cell(page, 4)
        g3 = _grid(page, 2)
        expect(g3.locator(".rlm-map-cell.rlm-map-s-running").first).to_be_visible(timeout=60_000)
        g3.locator(".rlm-map-stop").click()
        expect(g3.locator(".rlm-map-total")).to_contain_text("cancelled", timeout=60_000)
        expect(g3.locator(".rlm-map-stop")).to_be_hidden(timeout=30_000)
        shot(page, "map_grid_stopped.png")

        # --- 1,000 items: renders, stays responsive ----------------------------------------
        t0 = time.monotonic()
        run_cell(page, 5)
        g4 = _grid(page, 3)
        expect(g4.locator(".rlm-map-total")).to_contain_text("1000/1000 done", timeout=60_000)
        expect(g4.locator(".rlm-map-cell.rlm-map-s-ok")).to_have_count(1000)
        render_s = time.monotonic() - t0
        t1 = time.monotonic()
        g4.locator(".rlm-map-cell").nth(999).click()
        expect(g4.locator(".rlm-map-cell").nth(999)).to_have_class(re.compile("rlm-map-sel"))
        click_s = time.monotonic() - t1
        shot(page, "map_grid_1000.png")
        print(f"1000-item grid: rendered in {render_s:.1f}s, a click answered in {click_s:.2f}s")
        assert click_s < 5
