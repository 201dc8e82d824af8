"""Honest model code must just work, in every backend that runs here (local and in-process).

One sandbox per backend and module keeps the suite fast on small machines; tests that break
state (timeouts, restarts) open their own.
"""

from __future__ import annotations

import pytest

from rlm_jupyter.sandbox import ExecResult, Sandbox, open_sandbox

BACKENDS = ["local", "inprocess"]

CALLS: list[tuple[str, tuple]] = []


def llm_query(prompt: str, model: str | None = None) -> str:
    CALLS.append(("llm_query", (prompt, model)))
    return f"answer to: {prompt}"


def llm_query_batched(prompts: list[str], model: str | None = None) -> list[str]:
    return [f"answer to: {p}" for p in prompts]


def failing(x: str) -> str:
    raise ValueError(f"bad input {x}")


FUNCTIONS = {"llm_query": llm_query, "llm_query_batched": llm_query_batched,
             "failing": failing}


@pytest.fixture(scope="module", params=BACKENDS)
def sb(request: pytest.FixtureRequest):
    box = open_sandbox(request.param, context="The quick brown fox. The lazy dog.",
                       functions=FUNCTIONS, timeout_s=10)
    yield box
    box.close()


def run(sb: Sandbox, code: str) -> ExecResult:
    r = sb.execute(code)
    assert r.error is None, r.error
    return r


def test_protocol_conformance(sb: Sandbox, request: pytest.FixtureRequest) -> None:
    """isinstance() on a runtime-checkable Protocol only sees that the names exist: this also
    checks what each method returns."""
    assert isinstance(sb, Sandbox)
    assert sb.kind in BACKENDS
    assert sb.kind == request.node.callspec.params["sb"]  # the backend asked for
    failed = sb.execute("raise ValueError('boom')")  # an error in code is a result, not raised
    assert isinstance(failed, ExecResult) and not failed.ok
    assert "ValueError: boom" in failed.error
    fine = sb.execute("print('fine')")
    assert isinstance(fine, ExecResult) and fine.ok and fine.stdout == "fine\n"
    assert sb.get_variable("context") == "The quick brown fox. The lazy dog."
    assert sb.get_variable("no_such_variable") is None
    assert sb.variables()["context"] == "str"
    assert sb.__enter__() is sb


def test_context_and_print(sb: Sandbox) -> None:
    assert run(sb, "print(len(context))").stdout == "34\n"


def test_augmented_assignment(sb: Sandbox) -> None:
    r = run(sb, "x = 1\nx += 1\nx *= 3\ns = 'a'\ns += 'b'\nprint(x, s)")
    assert r.stdout == "6 ab\n"


def test_augmented_items_and_attributes(sb: Sandbox) -> None:
    code = ("counts = {}\nfor w in context.split():\n    counts[w] = counts.get(w, 0)\n"
            "    counts[w] += 1\n"
            "class C:\n    def __init__(self):\n        self.n = 0\n"
            "c = C()\nc.n += 5\nprint(counts['The'], c.n)")
    assert run(sb, code).stdout == "2 5\n"


def test_tuple_unpacking(sb: Sandbox) -> None:
    code = ("def f():\n    return 1, (2, 3)\na, (b, c) = f()\n"
            "for i, (k, v) in enumerate({'x': 1}.items()):\n    print(i, k, v)\nprint(a, b, c)")
    assert run(sb, code).stdout == "0 x 1\n1 2 3\n"


def test_classes_with_init_and_methods(sb: Sandbox) -> None:
    code = ("class Acc:\n"
            "    def __init__(self, start):\n        self.total = start\n"
            "    def add(self, v):\n        self.total = self.total + v\n        return self\n"
            "    def __repr__(self):\n        return f'Acc({self.total})'\n"
            "class Sub(Acc):\n    pass\n"
            "a = Sub(1).add(2)\nprint(a, a.total, isinstance(a, Acc))")
    assert run(sb, code).stdout == "Acc(3) 3 True\n"


def test_custom_exception_class(sb: Sandbox) -> None:
    code = ("class Oops(Exception):\n    pass\n"
            "try:\n    raise Oops('boom')\nexcept Oops as e:\n    print('caught', e)")
    assert run(sb, code).stdout == "caught boom\n"


def test_comprehensions(sb: Sandbox) -> None:
    code = ("print([i * i for i in range(4)], {k: len(k) for k in ['ab', 'c']}, "
            "{x % 2 for x in range(5)}, sum(x for x in range(5)), "
            "[(a, b) for a, b in zip('ab', [1, 2])])")
    assert run(sb, code).stdout == "[0, 1, 4, 9] {'ab': 2, 'c': 1} {0, 1} 10 [('a', 1), ('b', 2)]\n"


def test_print_inside_functions_and_kwargs(sb: Sandbox) -> None:
    code = ("def show(x):\n    print('in', x, sep='-', end='!\\n')\n"
            "show(1)\nlist(map(show, [2]))\nprint('a', 'b')")
    assert run(sb, code).stdout == "in-1!\nin-2!\na b\n"


def test_print_in_function_defined_earlier(sb: Sandbox) -> None:
    run(sb, "def shout(x):\n    print(x.upper())")
    assert run(sb, "shout('hi')").stdout == "HI\n"


def test_format_and_fstrings(sb: Sandbox) -> None:
    code = ("name = 'fox'\nprint('{} {n} {}'.format('a', 'c', n=2), f'{name!r:>7}', "
            "'{x[0]}'.format_map({'x': [9]}), '%s-%d' % ('a', 3), str.format('{}', 1), "
            "format(3.14159, '.2f'))")
    assert run(sb, code).stdout == "a 2 c   'fox' 9 a-3 1 3.14\n"


def test_builtins(sb: Sandbox) -> None:
    code = ("print(sorted([3, 1, 2], reverse=True), list(zip('ab', 'cd')), list(enumerate('x')), "
            "min(4, 2), max([1, 9]), sum([1, 2, 3]), any([0, 1]), all([]), "
            "list(reversed([1, 2])), list(filter(None, [0, 1])), abs(-2), round(2.567, 1), "
            "divmod(7, 2), next(iter([5])), isinstance(1, int), len({1: 2}), "
            "getattr('x', 'upper')(), hasattr([], 'append'), hasattr(1, '__class__'))")
    r = run(sb, code)
    assert r.stdout == ("[3, 2, 1] [('a', 'c'), ('b', 'd')] [(0, 'x')] 2 9 6 True True "
                        "[2, 1] [1] 2 2.6 (3, 1) 5 True 1 X True False\n")


def test_try_except_finally(sb: Sandbox) -> None:
    code = ("try:\n    {}['k']\nexcept KeyError as e:\n    print('key', e)\n"
            "finally:\n    print('done')\n"
            "try:\n    int('x')\nexcept (ValueError, TypeError):\n    print('value')")
    assert run(sb, code).stdout == "key 'k'\ndone\nvalue\n"


def test_while_break_lambda_generator(sb: Sandbox) -> None:
    code = ("def gen(n):\n    for i in range(n):\n        yield i\n"
            "i = 0\nwhile True:\n    i += 1\n    if i > 3:\n        break\n"
            "sq = lambda v: v * v\nprint(i, list(gen(3)), sq(4), list(map(sq, gen(3))))")
    assert run(sb, code).stdout == "4 [0, 1, 2] 16 [0, 1, 4]\n"


@pytest.mark.parametrize("code,expected", [
    ("import re\nprint(re.findall(r'\\b\\w{5}\\b', context))", "['quick', 'brown']"),
    ("import json\nprint(json.loads(json.dumps({'a': [1]})))", "{'a': [1]}"),
    ("import math\nprint(math.floor(math.sqrt(17)), math.factorial(5))", "4 120"),
    ("from collections import Counter, defaultdict, deque\n"
     "print(Counter('aab').most_common(1), dict(defaultdict(int, a=1)), deque([1]).pop())",
     "[('a', 2)] {'a': 1} 1"),
    ("import itertools\nprint(list(itertools.islice(itertools.count(), 3)))", "[0, 1, 2]"),
    ("import statistics\nprint(statistics.mean([1, 2, 3]), statistics.median([1, 5, 2]))",
     "2 2"),
    ("import datetime\nprint(datetime.date(2024, 1, 2) + datetime.timedelta(days=1))",
     "2024-01-03"),
    ("import textwrap\nprint(textwrap.shorten('hello big world', width=12))", "hello [...]"),
    ("import difflib\nprint(difflib.get_close_matches('appel', ['apple', 'x']))", "['apple']"),
    ("import string\nprint(string.ascii_lowercase[:3], string.Template('$a').substitute(a=1))",
     "abc 1"),
    ("import heapq\nh = [3, 1, 2]\nheapq.heapify(h)\nprint(heapq.heappop(h))", "1"),
    ("import bisect\nprint(bisect.bisect_left([1, 3, 5], 3))", "1"),
    ("import functools\nprint(functools.reduce(lambda a, b: a + b, [1, 2, 3]))", "6"),
    ("import operator\nprint(sorted([(1, 'b'), (0, 'a')], key=operator.itemgetter(1)), "
     "operator.attrgetter('real')(3))", "[(0, 'a'), (1, 'b')] 3"),
    ("from fractions import Fraction\nprint(Fraction(1, 3) + Fraction(1, 6))", "1/2"),
    ("from decimal import Decimal\nprint(Decimal('0.1') + Decimal('0.2'))", "0.3"),
    ("from typing import List, Optional\ndef f(x: Optional[List[int]]) -> int:\n"
     "    return len(x or [])\nprint(f([1]))", "1"),
    ("import random\nrandom.seed(3)\na = random.random()\nrandom.seed(3)\n"
     "print(a == random.random(), 1 <= random.randint(1, 2) <= 2)", "True True"),
])
def test_allowed_imports(sb: Sandbox, code: str, expected: str) -> None:
    assert run(sb, code).stdout == expected + "\n"


def test_type_annotations_dataclasses_and_names(sb: Sandbox) -> None:
    code = ("from dataclasses import dataclass, field, asdict\n"
            "@dataclass\nclass Item:\n    name: str\n    score: float = 0.0\n"
            "    tags: list = field(default_factory=list)\n"
            "i = Item('a', 1.5)\ni.score += 1\ncount: int = 3\n"
            "def f():\n    'Says hi.'\n    return 1\n"
            "print(type(context).__name__, type(i).__name__, f.__name__, f.__doc__, count, "
            "asdict(i))")
    assert run(sb, code).stdout == ("str Item f Says hi. 3 "
                                    "{'name': 'a', 'score': 2.5, 'tags': []}\n")
    r = sb.execute("type(int)")
    assert r.error and "type() of a class" in r.error


def test_namedtuple_api(sb: Sandbox) -> None:
    code = ("from collections import namedtuple\nP = namedtuple('P', 'x y')\np = P(1, 2)\n"
            "print(p._asdict(), p._replace(x=5), P._fields, P._make([3, 4]).y)")
    assert run(sb, code).stdout == "{'x': 1, 'y': 2} P(x=5, y=2) ('x', 'y') 4\n"
    assert "private" in (sb.execute("print((1, 2)._asdict())").error or "")


def test_trailing_expression_is_echoed(sb: Sandbox) -> None:
    assert run(sb, "y = [1, 2]\nlen(y)").stdout == "2\n"
    assert run(sb, "None").stdout == ""


def test_variables_persist_between_cells(sb: Sandbox) -> None:
    run(sb, "persist_me = {'k': [1, 2]}")
    assert run(sb, "print(persist_me['k'][1])").stdout == "2\n"
    assert sb.get_variable("persist_me") == "{'k': [1, 2]}"
    assert sb.get_variable("does_not_exist") is None
    vs = sb.variables()
    assert vs["persist_me"] == "dict" and vs["context"] == "str"
    assert "FINAL" not in vs and "llm_query" not in vs


def test_final_and_final_var(sb: Sandbox) -> None:
    r = run(sb, "FINAL(42)")
    assert r.final == "42" and type(r.final) is str
    r = run(sb, "result = 'the fox'\nFINAL_VAR('result')")
    assert r.final == "the fox"
    r = sb.execute("FINAL_VAR('missing_var')")
    assert r.final is None and "NameError" in (r.error or "") and "missing_var" in r.error
    assert run(sb, "print(1)").final is None  # FINAL does not stick to later cells


def test_answer_dict(sb: Sandbox) -> None:
    r = run(sb, "answer['content'] = 'draft'")
    assert r.answer == {"content": "draft", "ready": False}
    r = run(sb, "answer['content'] += ' final'\nanswer['ready'] = True")
    assert r.answer == {"content": "draft final", "ready": True}
    r = run(sb, "answer = 'oops'")
    assert r.answer == {"content": "", "ready": False} and r.notes


def test_show_vars(sb: Sandbox) -> None:
    run(sb, "shown_var = 3")
    assert "shown_var: int" in run(sb, "SHOW_VARS()").stdout


def test_host_functions(sb: Sandbox) -> None:
    r = run(sb, "a = llm_query('hi')\nb = llm_query_batched(['x', 'y'])\nprint(a, b)")
    assert r.stdout == "answer to: hi ['answer to: x', 'answer to: y']\n"
    r = run(sb, "print(llm_query(prompt='p', model='m'))")
    assert r.stdout == "answer to: p\n" and CALLS[-1] == ("llm_query", ("p", "m"))


def test_host_function_error_becomes_exception(sb: Sandbox) -> None:
    r = run(sb, "try:\n    failing('q')\nexcept RuntimeError as e:\n    print('err:', e)")
    assert "bad input q" in r.stdout and "ValueError" in r.stdout
    r = sb.execute("failing('z')")
    assert "bad input z" in (r.error or "")


def test_host_functions_rebound_each_cell(sb: Sandbox) -> None:
    run(sb, "llm_query = 5\nFINAL = None")
    r = run(sb, "FINAL(llm_query('again'))")
    assert r.final == "answer to: again"


def test_host_function_args_must_be_json(sb: Sandbox) -> None:
    r = sb.execute("llm_query({1, 2})")
    assert r.error and "JSON" in r.error


def test_errors_are_reported_not_raised(sb: Sandbox) -> None:
    r = sb.execute("def f():\n    return 1 / 0\nf()")
    assert r.error and "ZeroDivisionError" in r.error and "line 2" in r.error
    r = sb.execute("def broken(:\n    pass")
    assert r.error and "SyntaxError" in r.error
    assert run(sb, "print('still fine')").stdout == "still fine\n"


def test_output_is_capped_with_note(sb: Sandbox) -> None:
    r = run(sb, "for i in range(5000):\n    print('line', i, 'x' * 20)")
    assert len(r.stdout) <= 20_000
    assert any("truncated" in n for n in r.notes)


def test_error_text_is_capped(sb: Sandbox) -> None:
    r = sb.execute("raise ValueError('e' * 100000)")
    assert r.error and len(r.error) < 5000


def test_pandas_through_facade(sb: Sandbox) -> None:
    pytest.importorskip("pandas")
    code = ("import pandas as pd\n"
            "df = pd.DataFrame({'w': context.split(), 'n': range(7)})\n"
            "g = df.groupby('w').n.sum().sort_values(ascending=False)\n"
            "print(df.shape, df.n.max(), g.index[0], df[df.n > 4].w.tolist(), "
            "df.w.str.len().max())")
    assert run(sb, code).stdout == "(7, 2) 6 dog. ['lazy', 'dog.'] 5\n"


def test_numpy_through_facade(sb: Sandbox) -> None:
    pytest.importorskip("numpy")
    r = run(sb, "import numpy as np\na = np.arange(6).reshape(2, 3)\nprint(a.sum(), a.shape, "
                "float(np.mean(a)))")
    assert r.stdout == "15 (2, 3) 2.5\n"


# ---- state-breaking tests: their own sandbox ------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
def test_infinite_loop_stopped_and_next_cell_works(kind: str) -> None:
    with open_sandbox(kind, context="ctx", timeout_s=1.5) as sb:
        run(sb, "kept = 7")
        r = sb.execute("while True:\n    pass")
        assert r.timed_out and not r.ok and r.error
        r = sb.execute("try:\n    while True:\n        pass\nexcept BaseException:\n"
                       "    while True:\n        pass\nfinally:\n    print('never')")
        assert r.timed_out
        r = run(sb, "print(kept, context)")
        assert r.stdout == "7 ctx\n"


def test_c_level_loop_killed_and_worker_restarted() -> None:
    with open_sandbox("local", context="ctx", timeout_s=1, grace_s=1) as sb:
        run(sb, "kept = 1")
        r = sb.execute("sum(range(10**14))")
        assert r.timed_out and r.restarted and r.notes
        assert any("restarted" in n for n in r.notes)
        r = sb.execute("print(context)\nprint(kept)")
        assert r.stdout == "ctx\n" and "NameError" in (r.error or "")


def test_worker_death_between_cells_is_recovered() -> None:
    import os
    import signal

    with open_sandbox("local", context="ctx", timeout_s=5) as sb:
        run(sb, "v = 1")
        os.kill(sb.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        sb._proc.wait(timeout=10)  # type: ignore[attr-defined]
        r = sb.execute("print(context)")
        assert r.restarted and r.stdout == "ctx\n"


def test_time_in_host_functions_does_not_count() -> None:
    import time

    def slow(x: str) -> str:
        time.sleep(1.2)
        return x

    for kind in BACKENDS:
        with open_sandbox(kind, functions={"slow": slow}, timeout_s=1, grace_s=0.5) as sb:
            r = sb.execute("print(slow('a'), slow('b'))")
            assert r.ok and r.stdout == "a b\n", (kind, r)


@pytest.mark.parametrize("ctx,code,expected", [
    (None, "print(context)", "None"),
    (["a", "b"], "print(len(context), context[1])", "2 b"),
    ({"doc1": "x", "doc2": "yy"}, "print(sorted(context), len(context['doc2']))",
     "['doc1', 'doc2'] 2"),
    (b"raw", "print(context.decode())", "raw"),
])
@pytest.mark.parametrize("kind", BACKENDS)
def test_context_types(kind: str, ctx: object, code: str, expected: str) -> None:
    with open_sandbox(kind, context=ctx, timeout_s=10) as sb:
        assert run(sb, code).stdout == expected + "\n"


@pytest.mark.parametrize("kind", BACKENDS)
def test_dataframe_context(kind: str) -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    with open_sandbox(kind, context=df, timeout_s=10) as sb:
        r = run(sb, "print(context.a.sum(), context[context.a > 1].b.tolist(), len(context))")
        assert r.stdout == "6 ['y', 'z'] 3\n"


@pytest.mark.parametrize("kind", BACKENDS)
def test_big_cell_compile_time_does_not_count(kind: str) -> None:
    code = "x = 1\n" * 60_000 + "print(x)"
    with open_sandbox(kind, timeout_s=0.5, grace_s=0.5) as sb:
        r = sb.execute(code)
        assert r.ok and r.stdout == "1\n" and not r.restarted, r
        r = sb.execute("x = 1\n" * 100_000)
        assert r.error and "limit" in r.error and not r.restarted


def test_large_context_loads() -> None:
    text = "x" * 20_000_000 + "NEEDLE"
    with open_sandbox("local", context=text, timeout_s=10) as sb:
        assert run(sb, "print(context.find('NEEDLE'))").stdout == "20000000\n"


def test_close_is_idempotent_and_execute_after_close_fails() -> None:
    from rlm_jupyter.sandbox import SandboxError

    for kind in BACKENDS:
        sb = open_sandbox(kind)
        sb.close()
        sb.close()
        with pytest.raises(SandboxError):
            sb.execute("print(1)")


def test_unknown_kind() -> None:
    from rlm_jupyter.sandbox import SandboxError

    with pytest.raises(SandboxError, match="unknown sandbox kind"):
        open_sandbox("nope")


def test_unpicklable_context_gives_clear_error() -> None:
    from rlm_jupyter.sandbox import SandboxError

    with pytest.raises(SandboxError, match="inprocess"):
        open_sandbox("local", context=(i for i in range(3)))


@pytest.mark.parametrize("kind", BACKENDS)
def test_csv_text_is_read_and_written_with_the_csv_module(kind: str) -> None:
    """A CSV context is common; the 1.5B model reached for `import csv` and was refused."""
    code = ("import csv\nrows = list(csv.DictReader(context.splitlines()))\n"
            "print(sum(int(r['amount']) for r in rows if r['date'].startswith('2026-03')))\n"
            "class Sink:\n    def __init__(self):\n        self.parts = []\n"
            "    def write(self, s):\n        self.parts.append(s)\n"
            "s = Sink()\ncsv.writer(s).writerow(['a', 'b,c'])\nprint(''.join(s.parts).strip())\n")
    context = "date,amount\n2026-02-28,100\n2026-03-01,5\n2026-03-31,7\n"
    with open_sandbox(kind, context=context, timeout_s=20) as sb:
        r = sb.execute(code)
        assert r.error is None, r.error
        assert r.stdout.split("\n")[:2] == ["12", 'a,"b,c"']
        refused = sb.execute("import csv\ncsv.field_size_limit(10)")  # process-wide state
        assert refused.error and "field_size_limit" in refused.error
