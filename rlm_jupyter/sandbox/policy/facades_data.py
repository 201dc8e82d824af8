"""The numpy and pandas facades (offered only when the library is installed)."""

from __future__ import annotations

import math as _math
from typing import TYPE_CHECKING, Any, Callable, Dict

from .facade import Facade, _pick
from .pandas_rules import PANDAS_FUNC_FUNCTIONS, _checked_func_method

if TYPE_CHECKING:  # pragma: no cover
    from .repl import Repl


def _fac_numpy(repl: Repl) -> Dict[str, Any]:
    import numpy as np
    names = ("array asarray arange linspace zeros ones full empty zeros_like ones_like "
             "full_like eye identity concatenate stack vstack hstack column_stack split "
             "array_split reshape ravel transpose where nonzero argwhere unique sort argsort "
             "argmax argmin max min amax amin sum prod cumsum cumprod mean median std var "
             "average percentile quantile histogram bincount digitize searchsorted clip abs "
             "absolute sqrt exp log log2 log10 log1p sin cos tan arcsin arccos arctan arctan2 "
             "floor ceil round rint trunc sign isnan isinf isfinite nan inf pi e dot matmul "
             "inner outer cross linalg_norm diff gradient convolve corrcoef cov allclose "
             "isclose array_equal logical_and logical_or logical_not logical_xor all any "
             "maximum minimum add subtract multiply divide power mod floor_divide count_nonzero "
             "int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 "
             "bool_ str_ ndarray dtype newaxis tile repeat flip roll unravel_index "
             "nanmean nanmedian nanstd nansum nanmax nanmin nanargmax nanargmin isin "
             "intersect1d union1d setdiff1d in1d cumsum diag trace triu tril meshgrid "
             "polyfit polyval interp vectorize frompyfunc")
    m = _pick(np, names)
    limit = repl.limits["max_seq"] * 8  # bytes one call may allocate

    def _count(shape: Any) -> int:
        if isinstance(shape, (int, np.integer)):
            return max(int(shape), 0)
        n = 1
        for d in tuple(shape):
            n *= max(int(d), 0)
        return n

    def _refuse(fname: str, nbytes: int) -> None:
        if nbytes > limit:
            raise MemoryError(f"numpy.{fname} would allocate {nbytes / 1e9:.1f} GB, over the "
                              f"sandbox limit of {limit / 1e9:.1f} GB; work on smaller pieces")

    def _itemsize(dtype: Any, default: Any = float) -> int:
        try:
            return max(np.dtype(default if dtype is None else dtype).itemsize, 8)
        except Exception:
            return 8

    def shaped(fname: str) -> Callable[..., Any]:
        real = getattr(np, fname)

        def make(shape: Any, *args: Any, **kwargs: Any) -> Any:
            dtype = kwargs.get("dtype", args[1] if fname == "full" and len(args) > 1 else
                               args[0] if fname != "full" and args else None)
            _refuse(fname, _count(shape) * _itemsize(dtype))
            return real(shape, *args, **kwargs)

        make.__name__ = fname
        return make

    for fname in ("zeros", "ones", "empty", "full"):
        m[fname] = shaped(fname)

    def arange(*args: Any, **kwargs: Any) -> Any:
        try:
            n = len(range(*[int(a) for a in args[:3]])) if args and all(
                isinstance(a, (int, np.integer)) for a in args[:3]) else 0
        except (OverflowError, ValueError):
            n = 1 << 62
        if args and not n and all(isinstance(a, (int, float, np.number)) for a in args[:3]):
            a = [float(x) for x in args[:3]]
            start, stop, step = (0.0, a[0], 1.0) if len(a) == 1 else (
                a[0], a[1], a[2] if len(a) > 2 else 1.0)
            n = int(abs((stop - start) / step)) if step and _math.isfinite(
                (stop - start) / step) else 1 << 62
        _refuse("arange", n * 8)
        return np.arange(*args, **kwargs)

    def linspace(start: Any, stop: Any, num: Any = 50, *args: Any, **kwargs: Any) -> Any:
        _refuse("linspace", _count(num) * 8)
        return np.linspace(start, stop, num, *args, **kwargs)

    def eye(N: Any, M: Any = None, *args: Any, **kwargs: Any) -> Any:
        _refuse("eye", _count((N, N if M is None else M)) * 8)
        return np.eye(N, M, *args, **kwargs)

    def identity(n: Any, *args: Any, **kwargs: Any) -> Any:
        _refuse("identity", _count((n, n)) * 8)
        return np.identity(n, *args, **kwargs)

    def tile(A: Any, reps: Any) -> Any:
        _refuse("tile", np.size(A) * _count(reps) * 8)
        return np.tile(A, reps)

    def repeat(a: Any, repeats: Any, axis: Any = None) -> Any:
        r = int(np.max(repeats)) if np.size(repeats) else 0
        _refuse("repeat", np.size(a) * max(r, 0) * 8)
        return np.repeat(a, repeats, axis)

    def outer(a: Any, b: Any, out: Any = None) -> Any:
        _refuse("outer", np.size(a) * np.size(b) * 8)
        return np.outer(a, b, out)

    m.update(arange=arange, linspace=linspace, eye=eye, identity=identity, tile=tile,
             repeat=repeat, outer=outer)
    la = np.linalg
    m["linalg"] = Facade("numpy.linalg", _pick(la, "norm inv det eig eigh svd solve lstsq "
                                                   "matrix_rank pinv qr cholesky"))
    rng = np.random.default_rng()

    def rand(*shape: Any) -> Any:
        _refuse("random.rand", _count(shape) * 8)
        return rng.random(shape if shape else None)

    def default_rng(seed: Any = None) -> Any:
        return Facade("numpy.random.Generator", {
            n: sized_rng_of(np.random.default_rng(seed), n, p) for n, p in _RNG_METHODS})

    def sized_rng_of(gen: Any, fname: str, size_pos: int) -> Callable[..., Any]:
        real = getattr(gen, fname)

        def call(*args: Any, **kwargs: Any) -> Any:
            size = kwargs.get("size", args[size_pos] if len(args) > size_pos else None)
            if size is not None:
                _refuse(f"random.{fname}", _count(size) * 8)
            return real(*args, **kwargs)

        call.__name__ = fname
        return call

    members = {n: sized_rng_of(rng, n, p) for n, p in _RNG_METHODS}
    members.update(default_rng=default_rng, rand=rand, randint=members["integers"])
    m["random"] = Facade("numpy.random", members)
    return m


#: numpy Generator methods the sandbox offers, with the position of their ``size`` argument
#: (-1: none). A Generator is handed out as a facade: its ``bit_generator`` (raw C state,
#: ``cffi``/``ctypes`` pointers) is not reachable.
_RNG_METHODS = (("random", 0), ("integers", 2), ("choice", 1), ("normal", 2),
                ("uniform", 2), ("shuffle", 99), ("permutation", 99), ("standard_normal", 0),
                ("exponential", 1), ("poisson", 1), ("binomial", 2), ("bytes", 0))


def _fac_pandas(repl: Repl) -> Dict[str, Any]:
    import pandas as pd
    m = _pick(pd, "DataFrame Series Index MultiIndex Categorical CategoricalDtype concat "
                     "merge merge_asof to_datetime to_numeric to_timedelta isna isnull notna "
                     "notnull NA NaT Timestamp Timedelta Period DateOffset date_range "
                     "timedelta_range period_range interval_range cut qcut crosstab "
                     "pivot_table pivot unique factorize get_dummies melt wide_to_long "
                     "IndexSlice Interval")
    for fname, (pos, keys) in PANDAS_FUNC_FUNCTIONS.items():
        if fname in m:
            m[fname] = _checked_func_method(m[fname], fname, pos, keys)
    return m
