"""The user-facing image recipe: shipped with the package, and the build command it documents
is the one our error messages give (no daemon needed)."""

from __future__ import annotations

import os

import rlm_jupyter
from rlm_jupyter.sandbox import docker as dsb

DOCKERFILE = os.path.join(os.path.dirname(rlm_jupyter.__file__), "docker", "Dockerfile")


def test_dockerfile_is_python_slim_with_pandas_and_numpy() -> None:
    with open(DOCKERFILE, encoding="utf-8") as fh:
        text = fh.read()
    assert "\nFROM python:3.12-slim" in text
    assert "pandas" in text and "numpy" in text
    assert "docker build -t rlm-jupyter/python:bookworm" in text


def test_missing_image_error_gives_the_same_one_line_build() -> None:
    assert dsb.DEFAULT_IMAGE == "rlm-jupyter/python:bookworm"
    assert "docker build -t rlm-jupyter/python:bookworm" in dsb.BUILD_HINT
    assert "import rlm_jupyter, os" in dsb.BUILD_HINT
