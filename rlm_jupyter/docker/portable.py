"""Pickle contexts so that an image with *other* pandas/numpy versions can load them.

Why: a plain pickle of a DataFrame names private modules (``numpy._core``,
``pandas._libs...``) and internal block layouts that change between releases; a pickle made by
pandas 3 / numpy 2 on the host does not load in an image with pandas 1.5 / numpy 1.24 (Debian
bookworm's). Here pandas and numpy objects are rebuilt in the container through their public
constructors (``pandas.DataFrame``, ``pandas.Series``, ``numpy.array``...) from plain Python
values, so any pandas >= 1.0 / numpy >= 1.17 in the image can read them. Everything else
pickles as usual. Host -> worker is the trusted direction; nothing here is ever unpickled on
the host.
"""

from __future__ import annotations

import functools
import io
import pickle
import sys
from typing import Any

_PASS_DTYPES = {
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128", "category",
    "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float32", "Float64", "boolean",
}


def _portable_dtype(dtype: Any) -> str | None:
    """A dtype name every pandas understands, or None to let the container infer one."""
    name = str(dtype)
    if name in _PASS_DTYPES:
        return name
    if name.startswith("datetime64["):  # pandas 2+ has s/ms/us units; 1.x knows ns only
        tz = name[len("datetime64["):-1].partition(",")[2].strip()
        return f"datetime64[ns, {tz}]" if tz else "datetime64[ns]"
    if name.startswith("timedelta64["):
        return "timedelta64[ns]"
    return None


class _PortablePickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, pd: Any, np: Any) -> None:
        super().__init__(file, protocol=4)
        self._pd, self._np = pd, np

    def reducer_override(self, obj: Any) -> Any:  # noqa: C901 - one dispatch table
        pd, np = self._pd, self._np
        if isinstance(obj, type):
            return NotImplemented
        if np is not None:
            if isinstance(obj, np.ndarray):
                dt = _portable_dtype(obj.dtype)
                if obj.dtype.kind in "mM":
                    return functools.partial(np.array, dtype=str(obj.dtype)), (
                        obj.astype(str).tolist(),)
                if dt is None or obj.dtype.kind == "O":
                    return np.array, (obj.tolist(),)
                return functools.partial(np.array, dtype=dt), (obj.tolist(),)
            if isinstance(obj, np.generic):
                if obj.dtype.kind in "mM":
                    return functools.partial(np.array, dtype=str(obj.dtype)), (str(obj),)
                return obj.item().__class__, (obj.item(),)
        if pd is None:
            return NotImplemented
        if obj is pd.NaT:
            return pd.Timestamp, ("NaT",)
        if obj is getattr(pd, "NA", object()):
            return type(None), ()  # None is the closest value every pandas understands
        if isinstance(obj, pd.Timestamp):
            return pd.Timestamp, (obj.isoformat(),)
        if isinstance(obj, pd.Timedelta):
            return functools.partial(pd.Timedelta, unit="ns"), (int(obj.value),)
        if isinstance(obj, pd.MultiIndex):
            return functools.partial(pd.MultiIndex.from_tuples, names=list(obj.names)), (
                list(obj),)
        if isinstance(obj, pd.RangeIndex):
            return functools.partial(pd.RangeIndex, name=obj.name), (
                obj.start, obj.stop, obj.step)
        if isinstance(obj, pd.Index):
            return functools.partial(pd.Index, dtype=_portable_dtype(obj.dtype),
                                     name=obj.name), (_values(obj),)
        if isinstance(obj, pd.Series):
            return functools.partial(pd.Series, index=obj.index,
                                     dtype=_portable_dtype(obj.dtype), name=obj.name), (
                _values(obj),)
        if isinstance(obj, pd.DataFrame):
            # DataFrame(index=...) and then df[name] = Series(...), in column order.
            columns = [(name, obj.iloc[:, i]) for i, name in enumerate(obj.columns)]
            return (functools.partial(pd.DataFrame, index=obj.index), (), None, None,
                    iter(columns))
        return NotImplemented


def _values(obj: Any) -> list[Any]:
    """Plain Python values of an Index or Series (categoricals as their values)."""
    if str(obj.dtype) == "category":
        return list(obj.astype(object))
    return obj.tolist()


def portable_dumps(obj: Any) -> bytes:
    """Pickle ``obj`` so that pandas/numpy values load in any recent pandas/numpy."""
    pd = sys.modules.get("pandas")
    np = sys.modules.get("numpy")
    buf = io.BytesIO()
    _PortablePickler(buf, pd, np).dump(obj)
    return buf.getvalue()


def needs_portable(obj: Any, _depth: int = 0) -> bool:
    """True when ``obj`` holds pandas or numpy values (the only ones we rebuild)."""
    if "pandas" not in sys.modules and "numpy" not in sys.modules:
        return False
    mod = type(obj).__module__ or ""
    if mod.split(".")[0] in ("pandas", "numpy"):
        return True
    if _depth > 3:
        return False
    if isinstance(obj, dict):
        return any(needs_portable(v, _depth + 1) for v in list(obj.values())[:1000])
    if isinstance(obj, (list, tuple, set, frozenset)):
        return any(needs_portable(v, _depth + 1) for v in list(obj)[:1000])
    return False
