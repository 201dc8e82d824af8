"""The README's two commands are the product's front door: keep them true and working."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, re.S)


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    commands = readme_commands()
    assert len(commands) == 2
    main, tests = commands
    assert "rlm_jupyter.demo" in main
    assert "pytest" in tests and ".[dev]" in tests
    for command in commands:  # both install the exact versions CI was green on
        assert "-c requirements/lock.txt" in command
    assert (ROOT / "requirements" / "lock.txt").exists()
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci, "CI must run exactly the README's test command"


def test_main_job_runs_without_a_key_on_the_demo_model(tmp_path):
    """The main command's last step (the install steps are what this venv already did)."""
    main = readme_commands()[0]
    module_call = main.split("&&")[-1].strip()
    assert module_call.endswith("-m rlm_jupyter.demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_MODEL")}
    env["RLM_LOG_DIR"] = str(tmp_path / "runs")
    proc = subprocess.run([sys.executable, "-m", "rlm_jupyter.demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "demo" in out.lower()
    assert "4921-ALPHA" in out
    assert "without encryption" not in out  # the kernel's start-up noise is not shown


def test_plain_python_example_finds_the_needle(tmp_path):
    env = dict(os.environ, RLM_LOG_DIR=str(tmp_path / "runs"))
    env.pop("RLM_MODEL", None)
    proc = subprocess.run([sys.executable, "-m", "rlm_jupyter.demo", "--script", "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "scripted DEMO model" in proc.stdout
    assert "Answer:" in proc.stdout and "4921-ALPHA" in proc.stdout


def test_the_lock_pins_every_dependency_within_pyproject_ranges():
    """A lock that drifts from pyproject.toml installs versions nobody tested."""
    import tomllib

    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        spec = line.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" in spec:
            name, version = spec.split("==", 1)
            pins.setdefault(name.lower().replace("_", "-"), []).append(version)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        wanted += extra
    for text in wanted:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements/lock.txt: run bash scripts/lock"
        for version in pins[name]:
            assert req.specifier.contains(version, prereleases=True), (name, version, str(req))
    for bad in ("1.82.7", "1.82.8"):
        assert bad not in pins["litellm"]


def test_the_readme_demo_cells_answer_on_the_demo_model(tmp_path, monkeypatch):
    """A newcomer's first answer must not be nonsense: the README's demo cells, run as they are
    in an IPython shell, give the answer the README shows."""
    from IPython.core.interactiveshell import InteractiveShell

    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- demo-cells", 1)[1].split("<!-- /demo-cells -->", 1)[0]
    cells = re.findall(r"```(?:python)?\n(.+?)\n```", block, re.S)
    assert len(cells) == 3
    monkeypatch.delenv("RLM_MODEL", raising=False)
    monkeypatch.setenv("RLM_LOG_DIR", str(tmp_path / "runs"))
    ip = InteractiveShell.instance()
    saved_env = dict(os.environ)
    try:
        for cell in cells:
            result = ip.run_cell(cell, store_history=False)
            assert result.success, (cell, result.error_in_exec)
        shown = cells[2].split("#", 1)[1].strip()
        assert repr(ip.user_ns["code"]) == shown
    finally:
        from rlm_jupyter.jupyter.magics import get_magics

        ip.run_line_magic("rlm", "config --reset")
        get_magics(ip).close()  # stops the demo server
        os.environ.clear()
        os.environ.update(saved_env)  # `%rlm demo` points RLM_MODEL at its server


def test_the_repository_stands_alone():
    """The README and docs/ point only at files a clone has."""
    texts = {"README.md": (ROOT / "README.md").read_text()}
    for doc in (ROOT / "docs").glob("*.md"):
        texts[f"docs/{doc.name}"] = doc.read_text()
    assert "docs/ARCHITECTURE.md" in texts["README.md"] and "docs/ARCHITECTURE.md" in texts
    for name, text in texts.items():
        assert "../shared" not in text and "DESIGN.md" not in text, name
        for ref in re.findall(r"`((?:docs|notebooks|benchmarks|binder|scripts|requirements|tests)/[\w./-]+)`", text):
            assert (ROOT / ref.rstrip(".")).exists() or "*" in ref, (name, ref)


def _main_closure() -> set[str]:
    """Distributions `pip install -e .` brings in: the main dependencies and what they need."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return name.lower().replace("_", "-").replace(".", "-")

    todo = [Requirement(r).name for r in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        name = norm(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            for text in requires(name) or []:
                req = Requirement(text)
                if req.marker is None or req.marker.evaluate({"extra": ""}):
                    todo.append(req.name)
        except PackageNotFoundError:
            pass
    return seen


def test_the_main_command_installs_what_the_notebooks_and_readme_import():
    """Found: notebooks/02_dataframes.ipynb needed pandas, which `pip install -e .` did not
    install. Every module the shipped notebooks and the README's Python examples import comes
    with the main command."""
    import ast
    import json
    import sys
    from importlib.metadata import packages_distributions

    sources = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                sources.append("".join(cell["source"]))
    sources += re.findall(r"```python\n(.+?)\n```", (ROOT / "README.md").read_text(), re.S)
    modules: set[str] = set()
    for source in sources:
        lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))
                 and "= %" not in ln]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            continue
        guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try)
                   and any("ImportError" in ast.unparse(h.type or ast.Name("")) for h in t.handlers)
                   for stmt in t.body for n in ast.walk(stmt)}  # optional extras, handled
        for node in ast.walk(tree):
            if id(node) in guarded:
                continue
            if isinstance(node, ast.Import):
                modules.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    assert "pandas" in modules  # the notebook that failed is still checked
    closure = _main_closure()
    dists = packages_distributions()
    missing = []
    for module in sorted(modules - set(sys.stdlib_module_names) - {"rlm", "rlm_jupyter"}):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [])}
        if not names & closure:
            missing.append((module, sorted(names)))
    assert not missing, f"imported but not installed by `pip install -e .`: {missing}"
