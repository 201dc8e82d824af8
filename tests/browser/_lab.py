"""What the browser tests share: finding chromium, playwright and the Jupyter tools (a skip
with the reason locally, a failure in CI), notebook JSON, a JupyterLab server with isolated
settings, and a headless page on a notebook with its kernel idle."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = os.environ.get("RLM_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
TOKEN = "rlm-browser-test"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
CELLS = PANEL + " .jp-Cell"


def missing(tool: str) -> str | None:
    """Why the browser tests cannot run here (``tool``: the Jupyter command they need)."""
    if not Path(CHROMIUM).exists():
        return f"chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python playwright not installed (pip install playwright)"
    if shutil.which(tool, path=str(Path(sys.executable).parent)) is None:
        return f"{tool} not installed in this environment"
    return None


def require(tool: str) -> None:
    """Skip with the reason, or fail in CI (``RLM_CI=1``), where everything is installed."""
    reason = missing(tool)
    if reason:
        if os.environ.get("RLM_CI") == "1":
            pytest.fail(f"browser test required in CI: {reason}")
        pytest.skip(reason)


def cell(source: str) -> dict:
    return {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
            "source": source}


def notebook(cells: list[str]) -> dict:
    return {"cells": [cell(src) for src in cells],
            "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)",
                                        "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


def kernel_env(work: Path, **extra: str) -> dict[str, str]:
    """The kernel's environment: logs under ``work``, no model settings of the user's."""
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", RLM_LOG_DIR=str(work / "runs"),
               JUPYTER_RUNTIME_DIR=str(work / "rt"), **extra)
    for name in ("RLM_MODEL", "RLM_API_BASE", "RLM_API_KEY"):
        env.pop(name, None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(work: Path, notebooks: dict[str, list[str]]) -> Iterator[str]:
    """A JupyterLab server on ``work`` holding ``notebooks``; yields its URL.

    Isolated settings: every cell rendered (no virtual scrolling), no news popup."""
    for name, cells in notebooks.items():
        (work / name).write_text(json.dumps(notebook(cells)))
    settings = work / "settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        '{"windowingMode": "none"}')
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    port = _free_port()
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={work}",
         "--ServerApp.open_browser=False", "--allow-root",
         f"--LabApp.user_settings_dir={work / 'settings'}",
         f"--LabApp.workspaces_dir={work / 'workspaces'}"],
        cwd=work, env=kernel_env(work, JUPYTER_CONFIG_DIR=str(work / "cfg")), stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
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


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=False)


def cell_at(page, index: int):
    return page.locator(CELLS).nth(index)


def run_cell(page, index: int) -> None:
    target = cell_at(page, index)
    target.scroll_into_view_if_needed()
    target.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")


@contextlib.contextmanager
def open_notebook(lab: str, name: str) -> Iterator:
    """A headless chromium page on ``name`` with its kernel idle; on failure a screenshot and
    the browser console go to ``artifacts/``."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
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
            shot(page, "failure.png")
            (ARTIFACTS / "browser_console.log").write_text("\n".join(console))
            raise
        finally:
            browser.close()
