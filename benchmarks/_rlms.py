"""Getting the official RLM package (``rlms`` on PyPI) ready to run beside us.

``rlms`` goes into its own virtualenv (default ``~/.cache/rlm-jupyter-bench/venv-rlms``,
override with ``RLM_BENCH_RLMS_VENV``) through pip, the ordinary way. Its Docker environment
runs ``docker exec <container> python /workspace/_exec.py`` and needs ``python``, ``dill`` and
``requests`` in the image; with no image registry reachable we add Debian's ``python3-dill``,
``python3-requests`` (and their dependencies) and ``python-is-python3`` to our own
``rlm-jupyter/python:bookworm`` base: the .deb files come from apt on the host, ``dpkg -i``
runs in a container from the base, and ``docker commit`` tags the result.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _util import Skip

VENV = Path(os.environ.get("RLM_BENCH_RLMS_VENV",
                           Path.home() / ".cache" / "rlm-jupyter-bench" / "venv-rlms"))
BASE_IMAGE = os.environ.get("RLM_BENCH_BASE_IMAGE", "rlm-jupyter/python:bookworm")
RLMS_IMAGE = os.environ.get("RLM_BENCH_RLMS_IMAGE", "rlm-jupyter/rlms-python:bookworm")
DEBS = ["python3-dill", "python3-requests", "python3-urllib3", "python3-idna",
        "python3-certifi", "python3-charset-normalizer", "python3-chardet", "python-is-python3"]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv(log: callable = print) -> tuple[Path, str]:
    """The venv's interpreter and the installed rlms version; installs on first use."""
    python = venv_python()
    if not python.exists():
        log(f"creating {VENV} and installing rlms from PyPI ...")
        VENV.parent.mkdir(parents=True, exist_ok=True)
        base = getattr(sys, "_base_executable", None) or sys.executable
        _run([base, "-m", "venv", str(VENV)], "create the rlms virtualenv", timeout=300)
    version = _rlms_version(python)
    if version is None:
        _run([str(python), "-m", "pip", "install", "-q", "rlms"],
             "pip install rlms (needs PyPI)", timeout=900)
        version = _rlms_version(python)
        if version is None:
            raise Skip(f"rlms did not install into {VENV}")
    return python, version


def _rlms_version(python: Path) -> str | None:
    proc = subprocess.run([str(python), "-c",
                           "from importlib.metadata import version; print(version('rlms'))"],
                          capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_image(log: callable = print) -> str:
    """Tag ``RLMS_IMAGE`` (the base plus python, dill and requests) unless it exists."""
    if _image_exists(RLMS_IMAGE):
        return RLMS_IMAGE
    if not _image_exists(BASE_IMAGE):
        raise Skip(f"the base image {BASE_IMAGE} is missing: build it with `bash .ci/build-image`")
    log(f"building {RLMS_IMAGE} from {BASE_IMAGE} with Debian's {', '.join(DEBS[:2])} ...")
    with tempfile.TemporaryDirectory(prefix="rlms-debs-") as tmp:
        os.chmod(tmp, 0o777)  # apt's sandbox user must be able to write the downloads
        proc = subprocess.run(["apt-get", "download", *DEBS], cwd=tmp, capture_output=True,
                              text=True, timeout=300)
        if proc.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=300)
            _run(["apt-get", "download", *DEBS], "apt-get download the .deb files", cwd=tmp,
                 timeout=300)
        name = f"rlms-image-build-{os.getpid()}"
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        try:
            _run(["docker", "run", "--name", name, "--user", "0", "-v", f"{tmp}:/debs:ro",
                  BASE_IMAGE, "sh", "-c",
                  "dpkg --force-depends -i /debs/*.deb >/dev/null && "
                  "python -c 'import dill, requests'"],
                 "install the .deb files into a container", timeout=300)
            _run(["docker", "commit", "-c", 'CMD ["python3"]', name, RLMS_IMAGE],
                 "docker commit the rlms image", timeout=300)
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    return RLMS_IMAGE


SHIM = """#!/bin/sh
# rlms starts its container with `--add-host host.docker.internal:host-gateway` and reaches its
# host proxy through the bridge network. This daemon has no bridge (dockerd --bridge=none), so
# `docker run` gets the host's network instead and the name points at 127.0.0.1. Every other
# docker command (every `docker exec` per cell) passes straight through.
if [ "$1" = "run" ]; then
  n=$#
  for a in "$@"; do
    if [ "$a" = "host.docker.internal:host-gateway" ]; then
      set -- "$@" "host.docker.internal:127.0.0.1"
    else
      set -- "$@" "$a"
    fi
  done
  shift "$n"
  shift
  exec {real} run --network host "$@"
fi
exec {real} "$@"
"""


def docker_path_for_rlms(workdir: Path) -> tuple[str | None, str | None]:
    """(a folder to put first on rlms's PATH, a note for RESULTS.md), or (None, None).

    Needed only when the daemon has no ``bridge`` network, where rlms's containers cannot
    reach the host at all.
    """
    if subprocess.run(["docker", "network", "inspect", "bridge"],
                      capture_output=True).returncode == 0:
        return None, None
    import shutil

    real = shutil.which("docker")
    if real is None:
        return None, None
    folder = workdir / "rlms-docker-shim"
    folder.mkdir(exist_ok=True)
    shim = folder / "docker"
    shim.write_text(SHIM.replace("{real}", real))
    shim.chmod(0o755)
    return str(folder), ("this Docker daemon has no bridge network (`dockerd --bridge=none`), "
                         "so rlms's `--add-host host.docker.internal:host-gateway` cannot "
                         "reach its host proxy; a `docker` wrapper (a 10-line sh script) first "
                         "on rlms's PATH turns that one `docker run` into `--network host` "
                         "with the name mapped to 127.0.0.1. Its per-cell `docker exec` calls "
                         "pass through unchanged.")


def _image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def _run(cmd: list[str], what: str, timeout: float, cwd: str | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if proc.returncode != 0:
        raise Skip(f"could not {what}: `{' '.join(cmd[:4])} ...` exited {proc.returncode}: "
                   f"{(proc.stderr or proc.stdout).strip()[-300:]}")
