"""pandas and numpy attribute rules: the allow-lists, the checked function arguments, writes.

pandas objects pass an attribute allow-list (no ``eval``/``query``, no file writers); methods
that take a function name get a checked copy of it; pandas/numpy instances are written through
:class:`_LibraryWriter`, which never replaces a method.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from .rules import _MISSING, _is_numpy, _is_pandas


PANDAS_ALLOWED = frozenset("""
T abs add add_prefix add_suffix align all any append argmax argmin argsort array asof astype
at axes backfill between bfill capitalize casefold cat categories ceil clip codes columns
combine_first contains copy corr count cov cummax cummin cumprod cumsum cumcount date day
day_name dayofweek dayofyear days days_in_month daysinmonth describe diff difference div
divide dot drop drop_duplicates droplevel dropna dt dtype dtypes duplicated empty endswith eq
equals explode extract extractall factorize ffill fillna filter find findall first
first_valid_index floor floordiv freq fullmatch ge get get_group get_indexer get_level_values
get_loc groupby groups gt has_duplicates hasnans head hour iat idxmax idxmin iloc index
indices insert interpolate intersection is_monotonic_decreasing is_monotonic_increasing
is_unique isalnum isalpha isdecimal isdigit isin islower isna isnull isnumeric isocalendar
isoformat isspace istitle isupper item items iterrows itertuples join keys kurt kurtosis last
last_valid_index le len levels ljust loc lower lstrip lt map mask match max mean median melt
memory_usage merge microsecond min minute mod mode month month_name mul multiply name names
nanosecond nbytes ndim ne nlargest normalize notna notnull nsmallest nth nunique pad partition
pct_change pivot pivot_table pop pow prod product quantile quarter radd rank ravel rdiv reindex
rename rename_axis reorder_levels repeat replace reset_index resample rfind rindex rjust rmul
rolling round rpartition rsplit rstrip rsub rtruediv sample searchsorted second select_dtypes
sem set_axis set_index shape shift size skew slice slice_replace sort_index sort_values split
squeeze stack startswith std strftime strip sub subtract sum swapcase swaplevel symmetric_difference
tail time title to_dict to_frame to_list to_period to_pydatetime to_records to_series
to_string to_csv to_json to_markdown to_timestamp tolist total_seconds transpose truediv
truncate tz tz_convert tz_localize union unique unstack update upper value_counts var
week weekday where xs year zfill expanding ewm nsmallest ngroup ngroups groupby
isocalendar seconds microseconds components weekofyear is_leap_year is_month_end
is_month_start is_year_end is_year_start assign apply agg aggregate transform applymap pipe
set_names sort to_numpy values wrap len encode decode get_dummies removeprefix removesuffix
str is_na size value combine ordered from_dict from_records as_ordered add_categories
remove_categories
rename_categories set_categories
""".split())


#: Refused on pandas objects in strict (in-process) mode: they hand out raw numpy arrays or run
#: arbitrary callables/strings on the kernel thread.
PANDAS_STRICT_DENIED = frozenset("values to_numpy array apply agg aggregate transform applymap "
                                 "pipe to_records".split())


#: pandas methods that write to a path or buffer when given one: allowed only without one.
PANDAS_PATH_METHODS = frozenset("to_string to_csv to_json to_markdown".split())


NUMPY_DENIED = frozenset("ctypes tofile dump dumps load save savez savez_compressed fromfile "
                         "memmap lib ctypeslib testing f2py distutils setflags frombuffer "
                         "from_dlpack".split())


#: Attributes numpy arrays keep but sandbox code may not assign: they re-point an array at
#: other memory.
NUMPY_WRITE_DENIED = frozenset("strides data base ctypes flags shape_base".split())


def _pandas_column(obj: Any, name: str) -> Any:
    """``df.col`` / ``df.groupby(k).col``: column access spelled as an attribute."""
    tname = type(obj).__name__
    try:
        if tname == "DataFrame":
            if name in obj.columns:
                return obj[name]
        elif tname == "DataFrameGroupBy":
            if name in obj.obj.columns:
                return obj[name]
    except Exception:
        pass
    return _MISSING


def _no_path(method: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Wrap a pandas writer so it only returns text (no path, buffer or file)."""

    def writer(*args: Any, **kwargs: Any) -> Any:
        if (args and args[0] is not None) or any(
                kwargs.get(k) is not None for k in ("buf", "path_or_buf", "path")):
            raise PermissionError(f"{name}() may not write to a file in the sandbox; call it "
                                  f"without a path to get the text back")
        return method(*args, **kwargs)

    writer.__name__ = name
    return writer


#: The only function *names* pandas may resolve for sandbox code. pandas looks a string up with
#: ``getattr`` on the object (private attributes included), then on numpy, so the list is closed
#: and checked by value: anything else needs a real function (``df.agg(my_func)``).
SAFE_FUNC_NAMES = frozenset("""
sum mean median min max count size std var sem nunique first last prod product any all
cumsum cumprod cummax cummin cumcount idxmax idxmin skew kurt kurtosis quantile describe mode
nlargest nsmallest rank diff pct_change shift ffill bfill abs round unique value_counts ohlc
ngroup nth head tail fillna
""".split())


#: pandas methods that take a function (or a function name, or containers of them), and where.
#: name -> (positional index of the function, keyword names that hold functions,
#:          whether extra keywords are named aggregations ``x=(column, func)``)
PANDAS_FUNC_METHODS: Dict[str, Any] = {
    "apply": (0, ("func",), False), "agg": (0, ("func", "arg"), True),
    "aggregate": (0, ("func", "arg"), True), "transform": (0, ("func",), False),
    "map": (0, ("arg", "func", "mapper"), False), "applymap": (0, ("func",), False),
    "pipe": (0, ("func",), False), "pivot_table": (3, ("aggfunc",), False),
    "rolling": (None, ("win_type",), False),
}


#: pandas *functions* of the facade that take a function name: positional index and keywords.
PANDAS_FUNC_FUNCTIONS: Dict[str, Any] = {
    "pivot_table": (4, ("aggfunc",)), "crosstab": (5, ("aggfunc",)),
}


_WIN_TYPES = frozenset("boxcar triang blackman hamming bartlett parzen bohman blackmanharris "
                       "nuttall barthann cosine exponential tukey taylor".split())


def _safe_funcs(value: Any, name: str, depth: int = 0, mapping_ok: bool = False) -> Any:
    """A checked *copy* of a pandas function argument: names only from
    :data:`SAFE_FUNC_NAMES` (exact ``str``), recursively through plain lists, tuples and dicts.
    The copy is what pandas receives, so a container cannot show one thing to the check and
    another to pandas."""
    if depth > 20:
        raise PermissionError(f"{name}(): function arguments nest too deeply")
    if isinstance(value, str):
        if type(value) is not str or value not in SAFE_FUNC_NAMES:
            shown = str.__repr__(value)[:60]
            raise PermissionError(
                f"{name}() with the function name {shown} is not allowed in the sandbox; pass "
                f"a function (e.g. lambda s: s.sum()) or one of: "
                f"{', '.join(sorted(SAFE_FUNC_NAMES))}")
        return value
    if isinstance(value, dict):
        if mapping_ok:  # Series.map({...}): a lookup table, not functions
            return value
        if type(value) is not dict:
            raise PermissionError(f"{name}(): pass a plain dict of functions")
        return {k: _safe_funcs(v, name, depth + 1) for k, v in dict.items(value)}
    if isinstance(value, (list, tuple)):
        if type(value) not in (list, tuple):
            if _is_pandas(value) and isinstance(value, tuple):  # pd.NamedAgg
                return (tuple.__getitem__(value, 0),
                        _safe_funcs(tuple.__getitem__(value, 1), name, depth + 1))
            raise PermissionError(f"{name}(): pass a plain list or tuple of functions")
        items = [_safe_funcs(v, name, depth + 1) for v in
                 (list.__iter__(value) if type(value) is list else tuple.__iter__(value))]
        return items if type(value) is list else tuple(items)
    if _is_pandas(value) or not callable(value):
        return value  # a Series used as a mapping, a scalar...
    return value


def _named_agg(value: Any, name: str) -> Any:
    """``x=('col', func)`` / ``pd.NamedAgg(column, aggfunc)``: check the function part only."""
    if isinstance(value, tuple) and len(value) == 2:
        if type(value) is not tuple and not _is_pandas(value):
            raise PermissionError(f"{name}(): named aggregations must be plain tuples")
        return (tuple.__getitem__(value, 0),
                _safe_funcs(tuple.__getitem__(value, 1), name, 1))
    return _safe_funcs(value, name, 1)


def _checked_func_method(method: Callable[..., Any], name: str, pos: Optional[int],
                         keys: Any, named: bool = False) -> Callable[..., Any]:
    """Wrap a pandas method so every argument that pandas may resolve as a function name goes
    through :func:`_safe_funcs` (checked and copied)."""
    mapping_ok = name == "map"

    def call(*args: Any, **kwargs: Any) -> Any:
        if "engine" in kwargs or "engine_kwargs" in kwargs:
            raise PermissionError(f"{name}(engine=...) is not allowed in the sandbox")
        args = list(args)
        has_func = False
        if pos is not None and len(args) > pos:
            args[pos] = _safe_funcs(args[pos], name, mapping_ok=mapping_ok)
            has_func = True
        if name == "rolling":  # rolling(window, min_periods, center, win_type, ...)
            w = args[3] if len(args) > 3 else kwargs.get("win_type")
            if w is not None and (type(w) is not str or w not in _WIN_TYPES):
                raise PermissionError(f"rolling(win_type=...) must be one of "
                                      f"{sorted(_WIN_TYPES)} in the sandbox")
            return method(*args, **kwargs)
        for k in keys:
            if k in kwargs:
                kwargs[k] = _safe_funcs(kwargs[k], name, mapping_ok=mapping_ok)
                has_func = True
        if named and not has_func:
            kwargs = {k: _named_agg(v, name) for k, v in kwargs.items()}
        return method(*args, **kwargs)

    call.__name__ = name
    return call


def _static_attr(cls: type, name: str) -> Any:
    """The class attribute ``name`` without running descriptors (like inspect.getattr_static)."""
    for base in type.__getattribute__(cls, "__mro__"):
        d = type.__getattribute__(base, "__dict__")
        if name in d:
            return d[name]
    return _MISSING


class _LibraryWriter:
    """Writes to a pandas/numpy instance on sandbox code's behalf. Items pass through
    (``df['a'] = ...``, ``df.loc[...] = ...``); attributes only when they are data
    (``df.columns = ...``, ``s.name = ...``, ``df.newcol = ...``), never a method
    (``df.to_string = ...`` would run sandbox code when the kernel prints the frame), and not
    numpy's memory-layout attributes."""

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def _check(self, name: str) -> Any:
        target = object.__getattribute__(self, "_target")
        if type(name) is not str or name.startswith("_"):
            raise AttributeError("private attributes cannot be assigned in the sandbox")
        if _is_numpy(target) and name in NUMPY_WRITE_DENIED:
            raise AttributeError(f"{name!r} of a numpy object cannot be assigned in the "
                                 f"sandbox")
        attr = _static_attr(type(target), name)
        if attr is not _MISSING and not hasattr(type(attr), "__set__") and (
                callable(attr) or isinstance(attr, (staticmethod, classmethod))):
            raise AttributeError(f"cannot replace the method {name!r} of a "
                                 f"{type(target).__name__} in the sandbox")
        return target

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._check(name), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._check(name), name)

    def __setitem__(self, key: Any, value: Any) -> None:
        object.__getattribute__(self, "_target")[key] = value

    def __delitem__(self, key: Any) -> None:
        del object.__getattribute__(self, "_target")[key]

    def __getitem__(self, key: Any) -> Any:  # augmented assignment reads through the writer
        return object.__getattribute__(self, "_target")[key]
