"""An executed notebook read without a live kernel (issue 14.2): `jupyter nbconvert --execute
--to html` of a `%%rlm` notebook, opened in headless Debian chromium with the network off, and
again with JavaScript off (what GitHub's notebook view does), shows the answer and the
trajectory. The saved widget state makes nbconvert render the widget view, which needs
JavaScript from a CDN; the static view the widget puts beside it is what stays readable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _lab import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, kernel_env, notebook, require

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ANSWER = "4921-ALPHA"

STATIC_CELLS = [
    "%load_ext rlm\n%rlm demo\nfrom rlm_jupyter.demo import make_document\n"
    "doc = make_document(50_000)",
    "%%rlm --context doc --out code\nWhat is the access code for the vault in building 7?",
]


@pytest.fixture(scope="module", autouse=True)
def _require_browser() -> None:
    require("jupyter-nbconvert")


@pytest.fixture(scope="module")
def executed_html(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("nbconvert")
    (work / "static.ipynb").write_text(json.dumps(notebook(STATIC_CELLS)))
    env = kernel_env(work, RLM_CACHE_DIR=str(work / "cache"))
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--execute", "--to", "html",
         "--ExecutePreprocessor.timeout=300", "static.ipynb"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    html = work / "static.html"
    text = html.read_text()
    # The case of the issue: widget state saved, so nbconvert chose the widget view.
    assert "application/vnd.jupyter.widget-state+json" in text
    assert "application/vnd.jupyter.widget-view+json" in text
    return html


def _open_offline(html: Path, *, javascript: bool, shot: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(java_script_enabled=javascript,
                                          viewport={"width": 1200, "height": 1600})
            context.set_offline(True)
            blocked: list[str] = []

            def only_files(route) -> None:
                if route.request.url.startswith("file:"):
                    route.continue_()
                else:
                    blocked.append(route.request.url)
                    route.abort()

            context.route("**/*", only_files)
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            static = page.locator(".rlm-static-beside .rlm-static")
            expect(static).to_have_count(1)
            expect(static).to_be_visible()
            expect(static.locator(".answer")).to_contain_text(ANSWER)
            expect(static.locator(".hdr")).to_contain_text("ok")
            turn = static.locator("details > summary", has_text="Turn 1").first
            expect(turn).to_be_visible()
            turn.click()  # <details> opens without JavaScript
            expect(static.locator("details[open] pre").first).to_be_visible()
            ARTIFACTS.mkdir(exist_ok=True)
            static.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
            if javascript:  # the page did try the network (the widget manager's CDN)
                assert any(u.startswith("https:") for u in blocked), blocked
        finally:
            browser.close()


def test_executed_notebook_html_shows_the_run_offline(executed_html: Path) -> None:
    _open_offline(executed_html, javascript=True, shot="nbconvert_offline.png")


def test_executed_notebook_html_shows_the_run_without_javascript(executed_html: Path) -> None:
    """GitHub's notebook view runs no JavaScript and no widgets."""
    _open_offline(executed_html, javascript=False, shot="nbconvert_no_js.png")
