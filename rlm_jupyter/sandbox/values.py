"""Copy a sandbox variable out as plain JSON data, by value (``get``, typed answers).

Why its own module: it runs *inside* the sandbox (shipped to the worker as
``rlm_sandbox_values``, next to the policy, and imported directly by the in-process sandbox),
and it must never run code the model wrote. So it walks the value with exact type checks
(``type(v) is dict``, never ``isinstance``): an instance of a class the model defined, a
function, a module or any live object is refused, not converted. DataFrames and Series cross as
a tagged ``split`` layout the host rebuilds (``engine/output.py``). Standard library only:
the worker may run on any Python >= 3.9 image.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import math as _math
from typing import Any, Dict, List, Tuple

#: The tag a DataFrame or Series travels under; the host turns it back into the object.
TAG = "__rlm_type__"
MAX_DEPTH = 64


class NotPlain(ValueError):
    """The value (or something inside it) is not plain data."""


def _module_of(value: Any) -> str:
    return getattr(type(value), "__module__", "") or ""


def _float(value: float) -> Any:
    # JSON has no NaN/inf: None keeps the position (pandas writes null for NaN too).
    return None if (_math.isnan(value) or _math.isinf(value)) else value


def _plain(value: Any, depth: int, path: str) -> Any:
    if depth > MAX_DEPTH:
        raise NotPlain(f"{path} is nested more than {MAX_DEPTH} levels deep")
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        return _float(value)
    if kind in (list, tuple):
        return [_plain(item, depth + 1, f"{path}[{i}]") for i, item in enumerate(value)]
    if kind in (set, frozenset):
        items = [_plain(item, depth + 1, f"{path} item") for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if kind is dict:
        out: Dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is str:
                name = key
            elif type(key) in (int, float, bool) or key is None:
                name = _json.dumps(key)
            else:
                raise NotPlain(f"{path} has a key of type {type(key).__name__}; use str keys")
            out[name] = _plain(item, depth + 1, f"{path}[{key!r}]")
        return out
    if kind in (_dt.datetime, _dt.date, _dt.time):
        return value.isoformat()
    module = _module_of(value)
    if module == "numpy":  # numpy scalars (np.int64, np.float32, np.bool_, np.str_)
        if kind.__name__ == "ndarray":
            return _plain(value.tolist(), depth + 1, path)
        item = value.item()
        if type(item) in (bytes, complex):
            raise NotPlain(f"{path} is a numpy {kind.__name__}, which has no JSON form")
        return _plain(item, depth, path)
    if module == "pandas" or module.startswith("pandas."):
        return _pandas(value, kind.__name__, depth, path)
    raise NotPlain(f"{path} is a {kind.__name__}: only plain data (str, int, float, bool, "
                   f"None, list, dict) and pandas DataFrames/Series can be copied out")


def _pandas(value: Any, name: str, depth: int, path: str) -> Any:
    if name == "Timestamp":
        return value.isoformat()
    if name == "Timedelta":
        return str(value)
    if name in ("NaTType", "NAType"):
        return None
    if name == "DataFrame":
        split = value.to_dict(orient="split")
        return {TAG: "DataFrame",
                "columns": _plain(list(split["columns"]), depth + 1, f"{path}.columns"),
                "index": _plain(list(split["index"]), depth + 1, f"{path}.index"),
                "data": _plain(split["data"], depth + 1, path),
                "dtypes": [str(t) for t in value.dtypes]}
    if name == "Series":
        return {TAG: "Series", "name": _plain(value.name, depth + 1, f"{path}.name"),
                "index": _plain(list(value.index), depth + 1, f"{path}.index"),
                "data": _plain(value.tolist(), depth + 1, path), "dtype": str(value.dtype)}
    raise NotPlain(f"{path} is a pandas {name}: convert it to a DataFrame, a list or a dict")


def to_plain(value: Any, max_chars: int, name: str = "value") -> Tuple[bool, Any, int]:
    """``(True, plain, chars)`` or ``(False, error message, chars)``.

    ``chars`` is the size of the JSON text; over ``max_chars`` the copy is refused with a
    message that says how to make it smaller.
    """
    try:
        plain = _plain(value, 0, name)
        text = _json.dumps(plain, ensure_ascii=False, allow_nan=False)
    except NotPlain as exc:
        return False, str(exc), 0
    except RecursionError:
        return False, f"{name} is nested too deeply to copy", 0
    except Exception as exc:  # a library value that failed to convert
        return False, f"{name} could not be converted: {type(exc).__name__}: {exc}", 0
    if len(text) > max_chars:
        return False, (f"{name} is {len(text):,} characters as JSON, over the {max_chars:,} "
                       f"limit: select fewer rows or columns first, or raise max_chars"), len(text)
    return True, plain, len(text)


def lookup(namespace: Dict[str, Any], name: Any) -> Tuple[bool, Any]:
    """The variable called ``name``, refusing private and missing names."""
    if type(name) is not str or not name.isidentifier() or name.startswith("_"):
        return False, f"{name!r} is not a variable name"
    if name not in namespace:
        return False, f"there is no variable named {name!r} in the sandbox"
    return True, namespace[name]


def export(namespace: Dict[str, Any], name: Any, max_chars: int) -> Dict[str, Any]:
    """The ``json_value`` reply for a ``get_json`` request (worker and in-process alike)."""
    found, value = lookup(namespace, name)
    if not found:
        return {"ok": False, "error": value, "chars": 0}
    ok, plain, chars = to_plain(value, int(max_chars), str(name))
    if not ok:
        return {"ok": False, "error": plain, "chars": chars}
    return {"ok": True, "value": plain, "chars": chars}


__all__: List[str] = ["TAG", "NotPlain", "to_plain", "lookup", "export"]
