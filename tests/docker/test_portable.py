"""Portable pickles of pandas/numpy contexts (no daemon needed): they round-trip on the host and
name only public constructors, never private modules that differ between releases."""

from __future__ import annotations

import pickle
import pickletools

import pytest

from rlm_jupyter.docker.portable import needs_portable, portable_dumps

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")


def globals_named(data: bytes) -> set[str]:
    """Module names a pickle imports (GLOBAL and STACK_GLOBAL opcodes)."""
    names: set[str] = set()
    recent: list[object] = []  # the last values pushed, strings as themselves
    memo: dict[int, object] = {}
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            recent.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(int(arg)))
        elif op.name == "STACK_GLOBAL":
            names.add(str(recent[-2]))
            recent.append(None)
        elif op.name == "GLOBAL":
            names.add(str(arg).split(" ")[0])
            recent.append(None)
        else:
            recent.append(None)
    return names


def frame():
    return pd.DataFrame({
        "user": ["ann", "bob", None],
        "n": [1, 2, 3],
        "x": [0.5, np.nan, 2.0],
        "when": pd.to_datetime(["2024-01-01", None, "2024-03-01"]),
        "kind": pd.Categorical(["a", "b", "a"]),
        "maybe": pd.array([1, None, 3], dtype="Int64"),
    }, index=pd.Index([10, 20, 30], name="id"))


def test_dataframe_round_trips_with_public_names_only() -> None:
    df = frame()
    data = portable_dumps({"df": df, "arr": np.arange(3), "n": np.int64(5),
                           "mi": pd.MultiIndex.from_tuples([(1, "a")], names=["k", "v"])})
    mods = globals_named(data)
    assert not [m for m in mods if "._" in m or m.startswith("numpy.core")
                or ".core.internals" in m], mods
    back = pickle.loads(data)
    got = back["df"]
    assert list(got.columns) == list(df.columns) and got.index.name == "id"
    assert got["n"].tolist() == [1, 2, 3]
    assert str(got["kind"].dtype) == "category" and str(got["maybe"].dtype) == "Int64"
    assert got["when"].isna().tolist() == [False, True, False]
    assert str(got["when"].dtype).startswith("datetime64[")
    assert back["arr"].tolist() == [0, 1, 2] and back["n"] == 5 and type(back["n"]) is int
    assert list(back["mi"]) == [(1, "a")] and list(back["mi"].names) == ["k", "v"]


def test_only_pandas_and_numpy_values_need_it() -> None:
    assert needs_portable(frame())
    assert needs_portable({"a": [np.float64(1.0)]})
    assert not needs_portable({"a": [1, "x", {"b": 2.0}]})
    assert not needs_portable("plain text")
