"""Checks made before the first model call: a mistake found after turn 1 has been paid for.

Both raise :class:`~rlm_jupyter.errors.ConfigError` with one line that says what to do:

* :func:`check_context`: a context the chosen sandbox cannot take (a generator, a lambda, an
  open file, an object of a class defined in the notebook, which a worker process cannot
  rebuild) is named with what to convert it to;
* :func:`check_credentials`: a hosted model whose provider key is not set names the
  environment variable that provider reads (litellm knows which).
"""

from __future__ import annotations

import io
import types
from typing import Any, Iterator

from rlm_jupyter import errors

#: How many values of a large container are looked at (the first ones): a list of a million
#: strings needs no full walk to tell that it holds strings.
_WALK_LIMIT = 10_000

_LEAF_TYPES: tuple[type, ...] = (str, bytes, bytearray, int, float, complex, bool, type(None))
_WORKER_SANDBOXES = ("local", "docker")


def check_context(context: Any, sandbox: str) -> None:
    """Refuse, before any call, a context the sandbox cannot load."""
    for value, where in _walk(context, "the context"):
        reason = _refusal(value, sandbox)
        if reason:
            raise errors.ConfigError(f"{where.capitalize()} is {reason}")


def _walk(value: Any, where: str, depth: int = 0) -> Iterator[tuple[Any, str]]:
    yield value, where
    if depth >= 4 or isinstance(value, _LEAF_TYPES):
        return
    if isinstance(value, dict):
        for i, (key, item) in enumerate(value.items()):
            if i >= _WALK_LIMIT:
                return
            yield from _walk(item, f"{where}[{key!r}]", depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            if i >= _WALK_LIMIT:
                return
            yield from _walk(item, f"{where}[{i}]" if not isinstance(value, (set, frozenset))
                             else f"an item of {where}", depth + 1)


def _refusal(value: Any, sandbox: str) -> str | None:
    """Why ``value`` cannot be a context (or part of one) in ``sandbox``; None when it can."""
    if isinstance(value, _LEAF_TYPES):
        return None
    if isinstance(value, io.IOBase):
        return ("an open file: pass its text (f.read()) or its path "
                "(pathlib.Path(...), or --context 'path/*.txt').")
    if isinstance(value, (types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType)) \
            or (hasattr(value, "__next__") and hasattr(value, "__iter__")
                and not hasattr(value, "__len__")):
        return (f"an iterator ({type(value).__name__}), which can be read only once: "
                f"materialise it first, e.g. --context \"list(gen)\" or context=list(gen).")
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                          type)):
        return (f"a {'class' if isinstance(value, type) else 'function'} "
                f"({getattr(value, '__name__', '?')}), not data: call it and pass what it "
                f"returns.")
    if isinstance(value, types.ModuleType):
        return f"a module ({value.__name__}), not data: pass the values you want analysed."
    module = getattr(type(value), "__module__", "") or ""
    if sandbox in _WORKER_SANDBOXES and (module == "__main__" or module.startswith("__ipython")):
        return (f"an instance of {type(value).__name__}, a class defined in the notebook, "
                f"which the {sandbox!r} sandbox (a separate process) cannot rebuild: convert "
                f"it to plain data, e.g. vars(obj), dataclasses.asdict(obj) or a DataFrame.")
    return None


def check_credentials(model: str | None, *, transport: str, api_base: str | None,
                      api_key: str | None) -> None:
    """A hosted model's provider key, before the first call (not for a local server).

    Only providers whose missing settings are all API keys are checked: AWS, Vertex and other
    credential chains have more ways to log in than environment variables, so litellm's answer
    for them is not a reliable "no".
    """
    if not model or transport != "litellm" or api_base or api_key or model.startswith("local/"):
        return
    from rlm_jupyter.engine.llm import get_litellm

    try:
        found = get_litellm().validate_environment(model=model)
    except Exception:  # noqa: BLE001 - litellm cannot tell: let the call say
        return
    missing = [k for k in found.get("missing_keys") or [] if isinstance(k, str)]
    if found.get("keys_in_environment") or not missing:
        return
    if not all(name.endswith("_API_KEY") for name in missing):
        return
    names = " or ".join(missing)
    raise errors.ConfigError(
        f"{model} needs {names}: set it (os.environ[{missing[0]!r}] = ..., %env "
        f"{missing[0]}=..., or in the shell before starting Jupyter), or pass api_key=... "
        f"(RLM_API_KEY).")
