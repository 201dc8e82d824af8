"""Run the quickstart notebook headless and return its answer (the README's main command).

Why through the notebook and not the Python API: it proves the whole Jupyter path (kernel,
``%load_ext rlm``, ``%%rlm``, the live view's fallbacks) works on this machine, exactly as a
user will run it. Without ``RLM_MODEL`` the notebook uses the scripted demo model and says so.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

NOTEBOOK = "01_quickstart.ipynb"
ANSWER_VAR = "code"


def find_notebook(name: str = NOTEBOOK) -> Path:
    """The notebook in this checkout (``notebooks/`` next to the package)."""
    here = Path(__file__).resolve().parents[2] / "notebooks" / name
    if here.is_file():
        return here
    cwd = Path.cwd() / "notebooks" / name
    if cwd.is_file():
        return cwd
    raise FileNotFoundError(f"{name} not found: run from the rlm-jupyter checkout (notebooks/).")


def _outputs_text(cell: Any) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return "".join(parts)


def run_quickstart(timeout_s: int = 600, save_to: str | os.PathLike[str] | None = None,
                   verbose: bool = True) -> str:
    """Execute notebooks/01_quickstart.ipynb with nbclient; print and return its answer."""
    import nbformat
    from nbclient import NotebookClient

    path = find_notebook()
    nb = nbformat.read(path, as_version=4)
    # The kernel listens on loopback only; its start-up warning about unencrypted TCP would be
    # the first thing a newcomer reads, so the kernel logs errors only.
    client = NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            allow_errors=False, extra_arguments=["--log-level=ERROR"])
    # The quickstart shows an error cell on purpose (tagged raises-exception); nbclient honours it.
    started = time.time()
    client.execute()
    answer = ""
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("print(code)"):
            answer = _outputs_text(cell).strip()
            break
    if verbose:
        setup = next((c for c in nb.cells if c.cell_type == "code" and "%rlm demo" in c.source), None)
        if setup is not None:
            print(_outputs_text(setup).strip())
        print(f"Executed {path.name} in {time.time() - started:.1f}s")
        print(f"Answer: {answer}")
    if save_to:
        nbformat.write(nb, str(save_to))
    return answer


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    save = args[0] if args else None
    answer = run_quickstart(save_to=save)
    return 0 if answer else 1


if __name__ == "__main__":
    raise SystemExit(main())
