"""Every name every facade exposes, called with hostile arguments; then a seeded fuzz of
attribute chains and calls over the facades.

The calls run as sandbox code (through the real guards) in an in-process ``Repl``; the host
then inspects everything that came back with full introspection. Nothing may be a module,
frame, code object, traceback, raw-memory object, metaclass, a ``BaseException`` class outside
``Exception``, or a module-level function/builtin of a library that no facade exposes (the
real ``functools.update_wrapper`` behind ``wraps(x).func`` was one). Afterwards the namespace
and later cells must still work. The policy is the same file in all three backends, so what
holds here holds in each; the reproductions run on every backend in test_escapes_round2.py.
"""

from __future__ import annotations

import random
import sys
import time
import types

import pytest

from rlm_jupyter.sandbox import policy
from rlm_jupyter.sandbox.policy import ALLOWED_MODULES, Facade, Repl

HOSTILE_SETUP = """
class Evil:
    def __str__(self):
        return '__globals__'
    def __repr__(self):
        return '__builtins__'
    def __hash__(self):
        return 1
    def __len__(self):
        return 10**9
    def __iter__(self):
        return iter(['__class__', '__subclasses__', '__globals__'])
    def __getitem__(self, k):
        return '__dict__'
    def __call__(self, *a, **k):
        return '__globals__'
class S(str):
    pass
def own(*a, **k):
    return a
evil = Evil()
HOSTILE = ['__globals__', '__builtins__', '__class__', '__subclasses__', '__dict__',
           '__reduce__', '__init__', 'func', 'system', S('__class__'), evil,
           ('__globals__',), ('__builtins__', '__dict__'), [('a', '__dict__')],
           {'a': '__dict__'}, 10**9, 10**18, -10**9, own, None, 'sum', b'__class__']
KW = [{}, {'assigned': ('__globals__',)}, {'updated': ('__builtins__',)},
      {'aggfunc': '__dict__'}, {'func': '__dict__'}, {'key': own}, {'default': own}]
"""

WALK = """
results = []
errors = 0
for name in sorted(dir(fac)):
    obj = getattr(fac, name)
    results.append(obj)
    if not callable(obj):
        continue
    for arity in range(3):
        for kw in KW:
            for i in range(len(HOSTILE)):
                args = [HOSTILE[(i + j * 7) % len(HOSTILE)] for j in range(arity)]
                try:
                    results.append(obj(*args, **kw))
                except Exception:
                    errors += 1
"""

#: Module prefixes a returned *class* may come from: the facades' own modules, their C parts.
ALLOWED_CLASS_MODULES = set(ALLOWED_MODULES) | {
    "builtins", "_sre", "re._constants", "_json", "json.decoder", "json.encoder",
    "_collections", "_collections_abc", "_functools", "_operator", "_heapq", "_bisect",
    "_random", "_datetime", "_decimal", "_pydecimal", "_string", "typing", "types", "abc",
    "enum", "numbers", "statistics", "difflib", "textwrap", "dataclasses",
}


def _exposed(repl: Repl) -> set[int]:
    ids = {id(v) for v in repl._builtins_master.values()}
    for name in ALLOWED_MODULES:
        fac = repl._facade(name)
        if fac is None:
            continue
        for v in object.__getattribute__(fac, "_members").values():
            ids.add(id(v))
            if type(v) is Facade:
                ids.update(id(x) for x in object.__getattribute__(v, "_members").values())
    return ids


def bad_value(value: object, repl: Repl, exposed: set[int]) -> str | None:
    """Why ``value`` must never reach sandbox code, or None."""
    if isinstance(value, policy.FORBIDDEN_VALUE_TYPES):
        return f"a {type(value).__name__}"
    if policy._is_raw_memory(value):
        return "a raw-memory object"
    if isinstance(value, type):
        if issubclass(value, type):
            return "a metaclass"
        if issubclass(value, BaseException) and not issubclass(value, Exception):
            return f"the exception class {value.__name__}"
        mod = getattr(value, "__module__", "") or ""
        home = sys.modules.get(mod)
        is_library_class = home is not None and getattr(
            home, value.__qualname__.split(".")[0], None) is value
        if is_library_class and id(value) not in exposed and mod.split(".")[0] not in \
                {m.split(".")[0] for m in ALLOWED_CLASS_MODULES}:
            return f"the class {mod}.{value.__qualname__}"
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)) and \
            id(value) not in exposed:
        owner = getattr(value, "__self__", None)
        if isinstance(value, types.FunctionType):
            if value.__globals__ is repl.ns or value.__module__ == policy.__name__:
                return None
            mod = sys.modules.get(value.__module__ or "")
            if mod is not None and getattr(mod, value.__name__, None) is value:
                return f"the library function {value.__module__}.{value.__name__}"
        elif owner is None or isinstance(owner, types.ModuleType):
            return f"the builtin {value!r}"
    return None


def _flatten(value: object, depth: int = 0):  # type: ignore[no-untyped-def]
    yield value
    if depth < 2 and type(value) in (list, tuple, set, frozenset):
        for v in list(value)[:50]:
            yield from _flatten(v, depth + 1)
    elif depth < 2 and type(value) is dict:
        for k, v in list(value.items())[:50]:
            yield from _flatten(k, depth + 1)
            yield from _flatten(v, depth + 1)


@pytest.fixture(autouse=True)
def _address_space_cap():  # type: ignore[no-untyped-def]
    """Hostile arguments can make a C call reserve a huge block (numpy shapes from a lying
    ``__len__``...): cap this test process's address space while the walk runs, so such a
    call fails with MemoryError here instead of inviting the OOM killer onto the CI box."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = 10 * 1024 ** 3
    if soft == resource.RLIM_INFINITY or soft > cap:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _new_repl(strict: bool) -> Repl:
    repl = Repl(context="ctx", strict=strict, functions=["llm_query"],
                host_call=lambda name, a, k: "host says hi")
    r = repl.execute(HOSTILE_SETUP, timeout=10)
    assert r["error"] is None, r["error"]
    return repl


def _assert_healthy(repl: Repl) -> None:
    r = repl.execute("import os", timeout=5)
    assert "ImportError" in (r["error"] or ""), r
    r = repl.execute("print(6 * 7, len(context), llm_query('q'))", timeout=5)
    assert r["error"] is None and r["stdout"] == "42 3 host says hi\n", r
    assert repl.ns["__builtins__"] is repl.builtins
    assert repl.builtins == repl._builtins_master


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("strict", [True, False], ids=["inprocess-strict", "worker-policy"])
@pytest.mark.parametrize("module", ALLOWED_MODULES)
def test_every_facade_name_with_hostile_arguments(module: str, strict: bool) -> None:
    import pandas  # noqa: F401 - the class snapshot below

    repl = _new_repl(strict)
    if repl._facade(module) is None:
        pytest.skip(f"{module} is not installed")
    snapshot = {k: dict(vars(c)) for k, c in (("df", pandas.DataFrame),
                                              ("s", pandas.Series))}
    t0 = time.monotonic()
    r = repl.execute(f"import {module} as fac\n" + WALK, timeout=60)
    assert not r["timed_out"], f"{module}: the walk hit the deadline"
    assert r["error"] is None, r["error"]
    exposed = _exposed(repl)
    found = []
    for res in repl.ns["results"]:
        for v in _flatten(res):
            why = bad_value(v, repl, exposed)
            if why:
                found.append(why)
    assert not found, f"{module} handed out: {sorted(set(found))[:10]}"
    assert {k: dict(vars(c)) for k, c in (("df", pandas.DataFrame),
                                          ("s", pandas.Series))} == snapshot
    _assert_healthy(repl)
    assert time.monotonic() - t0 < 60


# --------------------------------------------------------------------------------------------
# Fuzz: seeded random attribute chains and calls over the facades, bounded in time.

FUZZ_NAMES = ["__class__", "__globals__", "__dict__", "__builtins__", "__self__", "func",
              "args", "keywords", "gi_frame", "f_globals", "cffi", "ctypes", "bit_generator",
              "mro", "base", "obj", "registry", "fget", "im_func", "closure", "register",
              "dispatch", "cache_info", "cache_parameters", "default_factory", "metadata",
              "values", "str", "dt", "loc", "index", "T", "agg", "apply", "groupby", "pipe",
              "pattern", "scanner", "encoder", "decoder", "lib", "core", "random", "linalg"]
FUZZ_ARGS = ["'__globals__'", "'__dict__'", "('__builtins__',)", "evil", "own", "10**9",
             "None", "'sum'", "S('__class__')", "[1, 2]", "{'a': '__dict__'}", "context",
             "fac", "llm_query", "FINAL"]


def _fuzz_cell(rng: random.Random, modules: list[str]) -> str:
    module = rng.choice(modules)
    lines = [f"import {module} as fac", "x = fac"]
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.5:
            name = rng.choice(FUZZ_NAMES + ["name"])
            if name == "name":
                lines.append("x = getattr(x, sorted(dir(x))[%d %% max(len(dir(x)), 1)])"
                             % rng.randint(0, 200))
            else:
                lines.append(f"x = getattr(x, {name!r})")
        else:
            args = ", ".join(rng.choice(FUZZ_ARGS) for _ in range(rng.randint(0, 3)))
            lines.append(f"x = x({args})")
    body = "\n".join("try:\n    " + ln + "\nexcept Exception:\n    pass"
                     for ln in lines[1:])
    return lines[0] + "\n" + lines[1] + "\nseen = []\n" + body.replace(
        "\nexcept", "\n    seen.append(x)\nexcept")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("strict", [True, False], ids=["inprocess-strict", "worker-policy"])
def test_fuzz_attribute_chains_and_calls(strict: bool) -> None:
    """A bounded, seeded fuzz (no extra dependency): ~15 s per policy mode at most."""
    seed = int(time.strftime("%Y%m%d"))  # a new walk each day, reproducible from the seed
    rng = random.Random(seed)
    repl = _new_repl(strict)
    modules = [m for m in ALLOWED_MODULES if repl._facade(m) is not None]
    exposed = _exposed(repl)
    t_end = time.monotonic() + 15
    cells = 0
    while time.monotonic() < t_end and cells < 3000:
        code = _fuzz_cell(rng, modules)
        r = repl.execute(code, timeout=5)
        cells += 1
        assert not r["timed_out"], (seed, code)
        for v in _flatten(repl.ns.get("seen", [])):
            why = bad_value(v, repl, exposed)
            assert why is None, f"seed {seed}: {why} from\n{code}"
        if cells % 50 == 0:
            _assert_healthy(repl)
    _assert_healthy(repl)
    assert cells >= 100
