"""Reproductions of issue 12 (round two of attacks), on every backend where they apply.

Each cell is written to *exploit* its hole: if the hole were open it would print a canary,
hand out a real module, change a library class, or run past its deadline or memory cap. Every
test also runs a plain cell afterwards, so an attack that breaks the REPL (``NameError:
_print_``) fails too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from rlm_jupyter.sandbox import open_sandbox

from security_helpers import BACKENDS, Canaries


@dataclass(frozen=True)
class Repro:
    id: str
    code: str
    refused: str = ""  # text the error must contain ("" = any error, or none if ok_output)
    ok_output: str | None = None  # exact stdout when the cell is allowed to succeed


R = Repro

REPROS: list[Repro] = [
    # 1. functools.wraps / update_wrapper as a getattr/setattr with caller-chosen names
    R("wraps-updated-builtins",
      "import functools, dataclasses\ndef f():\n    pass\n"
      "functools.wraps(dataclasses.fields, assigned=(), updated=('__builtins__',))(f)\n"
      "import os\nprint(os.environ['RLM_CANARY_KEY'])", "PermissionError"),
    R("wraps-updated-globals",
      "import functools, dataclasses\ndef f():\n    pass\n"
      "functools.wraps(dataclasses.fields, assigned=(), updated=('__globals__',))(f)\n"
      "print(sys.modules['os'].environ['RLM_CANARY_KEY'])", "PermissionError"),
    R("wraps-assigned-dunder",
      "import functools\ndef f():\n    pass\n"
      "functools.update_wrapper(f, len, assigned=('__self__',), updated=())\nprint(f)",
      "PermissionError"),
    R("wraps-func-attribute",
      "import functools\nuw = functools.wraps(len).func\n"
      "def f():\n    pass\nuw(f, f, updated=('__globals__',))\nprint(sys)", "AttributeError"),
    R("wraps-onto-library-class",
      "import functools, pandas\ndef g():\n    'x'\nfunctools.wraps(g)(pandas.DataFrame)\n"
      "print(pandas.DataFrame.__name__)", "TypeError"),
    R("total-ordering-library-class",
      "import functools, difflib\nfunctools.total_ordering(difflib.SequenceMatcher)",
      "TypeError"),
    R("dataclass-on-library-class",
      "import dataclasses, pandas\ndataclasses.dataclass(pandas.Series)", "TypeError"),
    R("singledispatch-annotation-eval",
      "import functools\n@functools.singledispatch\ndef f(x):\n    return 1\n"
      "@f.register\ndef g(x: \"int if ().__class__.__base__.__subclasses__() else int\"):\n"
      "    return 2\nprint(f(1))", "TypeError"),
    R("wraps-honest-use",
      "import functools\ndef deco(fn):\n    @functools.wraps(fn)\n    def inner(*a):\n"
      "        return fn(*a)\n    return inner\n@deco\ndef hello(x):\n    'doc'\n    return x\n"
      "print(hello.__name__, hello.__doc__, hello(3))", ok_output="hello doc 3\n"),
    # 2. string function names reaching pandas' getattr
    R("pandas-named-agg-dunder",
      "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2], 'b': [1, 1]})\n"
      "print(df.groupby('b').agg(x=('a', '__reduce__')))", ""),
    R("pandas-pivot-table-dunder",
      "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2], 'b': [1, 1]})\n"
      "print(pd.pivot_table(df, values='a', index='b', aggfunc='__dict__'))", "not allowed"),
    R("pandas-df-pivot-table-dunder",
      "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2], 'b': [1, 1]})\n"
      "print(df.pivot_table(values='a', index='b', aggfunc=['sum', '__dict__']))",
      "not allowed"),
    R("pandas-crosstab-dunder",
      "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2], 'b': [1, 1]})\n"
      "print(pd.crosstab(df.a, df.b, values=df.a, aggfunc='__sizeof__'))", "not allowed"),
    R("pandas-groupby-apply-private",
      "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2], 'b': [1, 1]})\n"
      "print(df.groupby('b').transform('_selected_obj'))", ""),
    R("pandas-agg-numpy-name",
      "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})\n"
      "print(df.a.agg('frombuffer'))", ""),
    R("pandas-agg-via-class",
      "import pandas as pd\ns = pd.Series([1, 2])\nprint(pd.Series.agg(s, '__dict__'))", ""),
    R("pandas-resample-agg-dunder",
      "import pandas as pd\ns = pd.Series([1, 2], index=pd.date_range('2024', periods=2))\n"
      "print(s.resample('D').agg('__dict__'))", ""),
    # 3. library classes are never writable
    R("pandas-class-method-overwrite",
      "import pandas\npandas.DataFrame.to_string = lambda self, *a, **k: 'PWN' + 'ED'\n"
      "print(pandas.DataFrame({'a': [1]}).to_string())", "cannot change the class"),
    R("pandas-series-sum-overwrite",
      "import pandas\npandas.Series.sum = lambda self, *a, **k: 5", "cannot change the class"),
    R("numpy-class-overwrite",
      "import numpy\nnumpy.ndarray.tolist = 1", "cannot change the class"),
    R("instance-method-shadow",
      "import pandas\ndf = pandas.DataFrame({'a': [1]})\ndf.to_string = lambda: 'x'",
      "cannot replace the method"),
    R("pandas-honest-writes",
      "import pandas as pd\ns = pd.Series([1, 2])\ns.name = 'n'\ns[0] = 4\ns.loc[1] += 1\n"
      "df = pd.DataFrame({'a': [1]})\ndf['b'] = [2]\ndf.columns = ['x', 'y']\n"
      "print(s.tolist(), s.name, list(df.columns))", ok_output="[4, 3] n ['x', 'y']\n"),
    # 4. raw memory doors
    R("numpy-bit-generator-cffi",
      "import numpy as np\ng = np.random.default_rng()\nprint(g.bit_generator.cffi)", ""),
    R("numpy-ndarray-ctypes", "import numpy as np\nprint(np.zeros(2).ctypes.data)", ""),
    R("numpy-stride-tricks",
      "import numpy as np\nprint(np.lib.stride_tricks.as_strided(np.zeros(1), (10**6,)))", ""),
    R("numpy-frombuffer", "import numpy as np\nprint(np.frombuffer(b'abc', 'u1'))", ""),
    # 5. size guards
    R("fraction-pow-huge", "import fractions\nx = fractions.Fraction(3) ** (10**9)",
      "MemoryError"),
    R("fraction-pow-builtin", "import fractions\nx = pow(fractions.Fraction(3, 2), 10**9)",
      "MemoryError"),
    R("object-array-pow",
      "import numpy as np\nx = np.array([3], dtype='O') ** (10**9)", "MemoryError"),
    R("round-huge-ndigits", "x = round(1, -10**9)", "MemoryError"),
    R("replace-amplify", "x = ('a' * 10**6).replace('a', 'b' * 1000)", "MemoryError"),
    R("join-amplify", "s = 'x' * 10**7\nx = ''.join([s] * 100)", "MemoryError"),
    R("join-separator", "x = ('y' * 10**6).join(['a'] * 1000)", "MemoryError"),
    R("unbound-ljust", "x = str.ljust('a', 10**12)", "MemoryError"),
    R("range-materialise", "x = sorted(range(10**12))", "MemoryError"),
    R("bytes-range", "x = bytes(range(10**12))", "MemoryError"),
    R("numpy-zeros-huge", "import numpy as np\nx = np.ones(10**11)", "MemoryError"),
    R("numpy-arange-huge", "import numpy as np\nx = np.arange(10**12)", "MemoryError"),
    R("random-choices-huge", "import random\nx = random.choices([1], k=10**10)",
      "MemoryError"),
    R("itertools-product-repeat", "import itertools\nx = itertools.product('a', repeat=10**9)",
      "MemoryError"),
    R("json-indent-huge", "import json\nx = json.dumps([[[1]]], indent=10**9)", "ValueError"),
    # the REPL keeps working whatever a cell did to its namespace
    R("raw-memory-values",
      "import numpy as np\nprint(np.random.default_rng().bit_generator)", ""),
]

#: Attacks that run until the deadline if their hole is open; each must stop at the deadline.
HANGS: list[Repro] = [
    R("lambda-map-count",
      "import itertools\nprint(any(map(lambda x: x < 0, itertools.count())))"),
    R("sum-count", "import itertools\nprint(sum(itertools.count()))"),
    R("iter-sentinel", "print(sum(iter(int, 1)))"),
    R("list-repeat", "import itertools\nx = list(itertools.repeat(1))"),
    R("lambda-recursion-free-loop",
      "f = lambda g: all(map(lambda x: True, iter(lambda: 0, 1)))\nf(0)"),
]


def _outputs(r) -> str:  # type: ignore[no-untyped-def]
    return "\n".join([r.stdout or "", r.error or "", r.final or "",
                      str(r.answer.get("content", "")), *r.notes])


def _ids(items: list[Repro]) -> list[str]:
    ids = [x.id for x in items]
    assert len(ids) == len(set(ids))
    return ids


@pytest.fixture(scope="module")
def boxes(canaries: Canaries):  # type: ignore[no-untyped-def]
    opened: dict[str, object] = {}
    yield opened
    for sb in opened.values():
        sb.close()  # type: ignore[attr-defined]


def _box(boxes: dict, backend: str, canaries: Canaries):  # type: ignore[no-untyped-def]
    sb = boxes.get(backend)
    if sb is None:
        sb = boxes[backend] = open_sandbox(
            backend, context="public context", functions=canaries.functions(), timeout_s=3,
            memory_mb=512 if backend == "inprocess" else 1536, grace_s=3)
    return sb


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("repro", REPROS, ids=_ids(REPROS))
def test_round2_escape_is_closed(backend: str, repro: Repro, canaries: Canaries,
                                 boxes: dict) -> None:
    import pandas

    before = (pandas.DataFrame.to_string, pandas.Series.sum, pandas.DataFrame.__name__)
    sb = _box(boxes, backend, canaries)
    try:
        _check_repro(sb, repro, canaries, before)
    except BaseException:
        boxes.pop(backend).close()  # a broken sandbox must not fail the next reproduction
        raise


def _check_repro(sb, repro: Repro, canaries: Canaries, before: tuple) -> None:  # type: ignore[no-untyped-def]
    import pandas

    r = sb.execute(repro.code)
    out = _outputs(r)
    for secret in canaries.values():
        assert secret not in out, f"{repro.id} leaked a canary: {out[:500]}"
    assert "PWNED" not in out and "<module" not in out and "cdata" not in out, out[:500]
    assert not r.timed_out, f"{repro.id} ran into the deadline: {r.error}"
    if repro.ok_output is not None:
        assert r.error is None, r.error
        assert r.stdout == repro.ok_output
    else:
        assert r.error, f"{repro.id} was not refused: {r.stdout[:300]}"
        assert repro.refused in r.error, r.error
    # nothing outlived the cell: library classes, builtins, the REPL itself
    assert (pandas.DataFrame.to_string, pandas.Series.sum,
            pandas.DataFrame.__name__) == before
    nxt = sb.execute("import functools\nprint(6 * 7, len(context))\nimport os")
    assert "ImportError" in (nxt.error or ""), f"after {repro.id}: {nxt.error}"
    assert nxt.stdout == "42 14\n", f"after {repro.id}: {nxt.stdout!r} {nxt.error}"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("repro", HANGS, ids=_ids(HANGS))
def test_round2_endless_c_loops_stop_at_the_deadline(backend: str, repro: Repro,
                                                      canaries: Canaries) -> None:
    """In-process these used to hang the kernel for ever (no check ran): now each one stops
    at the deadline, in every backend, without a restart."""
    with open_sandbox(backend, context="c", timeout_s=1.5, grace_s=3) as sb:
        t0 = time.monotonic()
        r = sb.execute(repro.code)
        assert r.timed_out and not r.restarted, (repro.id, r.error, r.restarted)
        assert time.monotonic() - t0 < 4.4
        assert sb.execute("print(1)").stdout == "1\n"


def test_round2_comprehension_memory_is_checked_per_item() -> None:
    """In-process: a comprehension of 25 big items used to grow the kernel by 2.5 GB past
    memory_mb=512 (memory was checked every 2,048 items)."""
    from rlm_jupyter.sandbox.inprocess import _rss_bytes

    with open_sandbox("inprocess", context="c", timeout_s=30, memory_mb=256) as sb:
        base = _rss_bytes()
        peak = [base]
        import threading

        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.01):
                peak[0] = max(peak[0], _rss_bytes())

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        try:
            r = sb.execute("x = [('x' * 5 * 10**7).upper() for i in range(25)]")
        finally:
            done.set()
            t.join()
        assert r.error and "memory" in r.error.lower() + " ".join(r.notes).lower(), r
        assert peak[0] - base < 1024 * 1024 * 1024, (peak[0] - base) / 2**20
        assert sb.execute("print(2)").stdout == "2\n"
