"""Install ``llama-cpp-python[server]`` into the current environment, building it at most once.

llama-cpp-python is published as a source archive only, and compiling it takes 6 to 17 minutes
on a small machine. We build a wheel once and keep it under the cache; later installs (new
virtual environments, CI runs that keep ``~/.cache``) take seconds. The wheel is tagged
``py3-none-<platform>`` so one build serves every Python version. llama.cpp compiles for the
host CPU by default, so the cache is keyed by machine type and CPU feature flags: a cache
copied to a different CPU rebuilds instead of crashing with an illegal instruction.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .errors import LocalModelError
from .paths import wheels_dir

LLAMA_CPP_VERSION = "0.3.36"
# Modules the OpenAI-compatible server imports (the package's ``[server]`` extra).
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context",
                  "pydantic_settings", "yaml")

Progress = Callable[[str], None]


def _say(progress: Progress | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def cpu_key() -> str:
    """A short key for 'wheels built here run here': machine type plus CPU feature flags."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
                    break
    except OSError:
        pass
    digest = hashlib.sha256(flags.encode()).hexdigest()[:10]
    return f"{sys.platform}-{platform.machine()}-{digest}"


def wheel_cache_dir() -> Path:
    return wheels_dir() / cpu_key()


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_server_modules() -> list[str]:
    """Modules the server needs that this environment cannot import."""
    return [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]


def server_installed() -> bool:
    return not missing_server_modules()


def cached_wheel() -> Path | None:
    folder = wheel_cache_dir()
    wheels = sorted(folder.glob(f"llama_cpp_python-{LLAMA_CPP_VERSION}-*.whl"))
    return wheels[-1] if wheels else None


def _check_toolchain() -> None:
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        raise LocalModelError(
            "Building llama-cpp-python needs a C/C++ compiler and none was found. Install one "
            "(Debian/Ubuntu: `sudo apt-get install build-essential`; macOS: "
            "`xcode-select --install`) and retry, or `pip install llama-cpp-python[server]` "
            "from a source that has a prebuilt wheel for your platform.")


def _lower_priority() -> None:  # runs in the child before exec
    try:
        os.nice(10)
    except OSError:
        pass


def build_wheel(*, progress: Progress | None = None, jobs: int | None = None) -> Path:
    """Compile llama-cpp-python into a cached wheel and return its path (minutes)."""
    _check_toolchain()
    folder = wheel_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "build.log"
    jobs = jobs or os.cpu_count() or 2
    env = dict(os.environ)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(jobs))
    # Only the library is needed; skipping llama.cpp's own tools and tests saves minutes.
    extra = "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"
    env["CMAKE_ARGS"] = (env.get("CMAKE_ARGS", "") + " " + extra).strip()
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    _say(progress, f"Building llama-cpp-python=={LLAMA_CPP_VERSION} (one time, 5-20 min); "
                   f"log: {log}")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rlm-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
               "--no-input", "-w", tmp, f"llama-cpp-python=={LLAMA_CPP_VERSION}"]
        with open(log, "w") as lf:
            proc = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env,
                                  preexec_fn=_lower_priority if os.name == "posix" else None)
        built = sorted(Path(tmp).glob("llama_cpp_python-*.whl"))
        if proc.returncode != 0 or not built:
            tail = log.read_text(errors="replace")[-2000:]
            raise LocalModelError(
                f"Building llama-cpp-python failed (exit {proc.returncode}). The full log is "
                f"{log}. Common fixes: install a C++ compiler and cmake, make sure PyPI is "
                f"reachable for the build tools, free disk space.\n...{tail}")
        target = folder / built[-1].name
        shutil.move(str(built[-1]), target)
    _say(progress, f"Built {target.name} in {time.monotonic() - t0:.0f} s")
    return target


def install_wheel(wheel: Path, *, progress: Progress | None = None) -> None:
    """pip-install the wheel plus the server extra's dependencies into this interpreter."""
    _say(progress, f"Installing {wheel.name}[server] into {sys.prefix}")
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
           "-q", f"{wheel}[server]"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LocalModelError(
            f"Installing {wheel.name} failed: {(proc.stderr or proc.stdout)[-1500:]}\n"
            "Check that PyPI is reachable (the server extra pulls uvicorn, fastapi, "
            "sse-starlette, starlette-context, pydantic-settings).")
    importlib.invalidate_caches()


def ensure_llama_cpp(*, progress: Progress | None = None) -> str:
    """Make ``python -m llama_cpp.server`` runnable here; return the llama-cpp-python version.

    Uses what is installed if it is complete (any version the user chose), else installs the
    cached wheel, building it first when there is none.
    """
    if server_installed():
        return installed_version() or "unknown"
    wheel = cached_wheel() or build_wheel(progress=progress)
    install_wheel(wheel, progress=progress)
    missing = missing_server_modules()
    if missing:
        raise LocalModelError(
            f"llama-cpp-python was installed but {', '.join(missing)} still cannot be imported "
            f"by {sys.executable}. Run `{sys.executable} -m pip install "
            f"'llama-cpp-python[server]=={LLAMA_CPP_VERSION}'` and look at its output.")
    return installed_version() or LLAMA_CPP_VERSION
