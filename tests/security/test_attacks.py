"""Adversarial suite: every attack, on every backend, with canaries planted.

Each attack is written to *exploit* its hole if it exists (print the API key, the secret file,
the notebook variable, or write a file), so a leak shows up as a canary in the output. For each
one we assert: no canary in anything returned, no file appeared outside the sandbox, the host is
alive and the next cell works.

``C_LEVEL`` attacks hold the GIL inside C code; they are stopped by killing the worker in the
process backends and are documented (SECURITY.md) as unstoppable in-process, so they do not run
there: they would freeze the test process itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from rlm_jupyter.sandbox import open_sandbox

from security_helpers import BACKENDS, Canaries


@dataclass(frozen=True)
class Attack:
    id: str
    category: str
    code: str
    c_level: bool = False  # unstoppable in-process: skipped there (documented)
    hangs: bool = False  # expected to hit the deadline


A = Attack

ATTACKS: list[Attack] = [
    # --- introspection escapes --------------------------------------------------------------
    A("class-subclasses", "introspection",
      "for c in ().__class__.__bases__[0].__subclasses__():\n    print(c)"),
    A("getattr-class", "introspection",
      "t = getattr((), '__class__')\nprint(getattr(t, '__subclasses__')())"),
    A("getattr-computed-name", "introspection",
      "n = '__cl' + 'ass__'\nb = getattr(getattr(1, n), '__ba' + 'se__')\n"
      "print([c for c in getattr(b, '__subcl' + 'asses__')() if 'wrap' in str(c)])"),
    A("str-subclass-attr-name", "introspection",
      "class S(str):\n    def startswith(self, *a):\n        return False\n"
      "print(getattr(1, S('__class__')))"),
    A("func-globals", "introspection",
      "def f():\n    pass\nprint(getattr(f, '__globals__')['__builtins__'])"),
    A("final-self-globals", "introspection",
      "r = getattr(FINAL, '__self__')\nprint(getattr(r, 'ns'))"),
    A("host-fn-closure", "introspection",
      "print(getattr(llm_query, '__closure__'))\nprint(getattr(llm_query, '_repl'))"),
    A("host-fn-public-attrs", "introspection",
      "print([getattr(llm_query, n, None) for n in ('func', 'args', 'keywords', 'fn', 'client',"
      " 'host_call', 'wrapped')])"),
    A("mro-to-object", "introspection",
      "o = ValueError.mro()[-1]\nprint(getattr(o, '__subclasses__')())"),
    A("traceback-frame", "introspection",
      "try:\n    1 / 0\nexcept Exception as e:\n    tb = getattr(e, '__traceback__')\n"
      "    print(getattr(getattr(tb, 'tb_frame'), 'f_globals'))"),
    A("super-object", "introspection",
      "class A:\n    def f(self):\n        return super()\nprint(A().f())"),
    A("type-builtin", "introspection", "print(type(1).__subclasses__())"),
    A("type-of-type", "introspection",
      "T = type(type(1))\nX = T('X', (), {'__del__': lambda self: print('ESCAPED')})\n"
      "x = X()\ndel x"),
    A("dunder-name-values", "introspection",
      "print(getattr(1, '__name__', None), getattr(FINAL, '__qualname__'), "
      "type(llm_query).__name__, getattr(llm_query, '__doc__'))\n"
      "print(getattr(type(1), '__dict__'))"),
    A("object-builtin", "introspection", "print(object.__subclasses__())"),
    A("vars-dir-globals", "introspection", "print(vars(), globals(), locals())"),
    A("print-self", "introspection", "p = print\nprint(getattr(p, '__self__'))"),
    A("with-exit-traceback", "introspection",
      "class C:\n    def __enter__(self):\n        return self\n"
      "    def __exit__(self, t, v, tb):\n        print(getattr(tb, 'tb_frame'))\n"
      "        print(getattr(v, '__traceback__'), getattr(t, '__subclasses__'))\n"
      "        return True\nwith C():\n    1 / 0"),
    A("exception-context-chain", "introspection",
      "try:\n    try:\n        1 / 0\n    except Exception:\n        raise KeyError('k')\n"
      "except KeyError as e:\n    print(getattr(e, '__context__'))"),
    A("facade-overwrite", "introspection",
      "import json\njson.loads = print\nsetattr(json, 'dumps', print)"),
    A("answer-ready-object", "host",
      "class T:\n    def __bool__(self):\n        while True:\n            pass\n"
      "    def __eq__(self, o):\n        while True:\n            pass\n"
      "answer['ready'] = T()\nanswer['content'] = 'x'"),
    # --- format strings -----------------------------------------------------------------------
    A("format-class-mro", "format", "print('{0.__class__.__mro__}'.format(1))"),
    A("format-func-globals", "format", "print('{0.__globals__}'.format(lambda: 1))"),
    A("format-map-final", "format",
      "print('{x.__self__.ns}'.format_map({'x': FINAL}))"),
    A("str-format-unbound", "format", "print(str.format('{0.__class__}', 1))"),
    A("format-getattr-method", "format",
      "f = getattr('{0.__init__.__globals__}', 'format')\nprint(f(FINAL))"),
    A("string-formatter", "format",
      "import string\nprint(string.Formatter().get_field('0.__class__', [1], {}))"),
    A("format-inspect-attr", "format",
      "g = (i for i in [1])\nprint('{0.gi_frame.f_globals}'.format(g))"),
    # --- generators, frames, tracebacks -------------------------------------------------------
    A("gen-frame", "frames", "g = (i for i in [1])\nprint(g.gi_frame.f_globals)"),
    A("gen-frame-getattr", "frames",
      "g = (i for i in [1])\nprint(getattr(getattr(g, 'gi_frame'), 'f_back'))"),
    A("gen-code", "frames",
      "def gen():\n    yield 1\nprint(getattr(gen(), 'gi_code'))"),
    A("import-inspect-traceback", "frames",
      "import inspect\nprint(inspect.currentframe().f_back.f_globals)"),
    A("import-traceback-module", "frames",
      "import traceback\nprint(traceback.extract_stack())"),
    # --- module-attribute pivots --------------------------------------------------------------
    A("re-enum-sys", "pivot",
      "import re\nprint(re.enum.sys.modules['os'].environ['RLM_CANARY_KEY'])"),
    A("re-enum-builtins", "pivot", "import re\nprint(re.enum.bltns.open('{FILE}').read())"),
    A("json-codecs-open", "pivot", "import json\nprint(json.codecs.open('{FILE}').read())"),
    A("datetime-sys", "pivot",
      "import datetime\nprint(datetime.sys.modules['os'].environ['RLM_CANARY_KEY'])"),
    A("statistics-sys", "pivot", "import statistics\nprint(statistics.sys.modules)"),
    A("fractions-sys", "pivot", "import fractions\nprint(fractions.sys.modules)"),
    A("textwrap-re-pivot", "pivot", "import textwrap\nprint(textwrap.re.enum.sys)"),
    A("typing-sys", "pivot", "import typing\nprint(typing.sys.modules['__main__'])"),
    A("collections-pivot", "pivot", "import collections\nprint(collections.abc, collections._sys)"),
    A("functools-pivot", "pivot",
      "import functools\nprint(getattr(functools.reduce, '__self__'), functools.GenericAlias)"),
    A("random-instance-pivot", "pivot",
      "import random\nprint(getattr(random.random, '__self__'))"),
    A("numpy-lib-pivot", "pivot",
      "import numpy as np\nprint(np.lib.stride_tricks.as_strided, np.ctypeslib)"),
    A("numpy-ctypes", "pivot", "import numpy as np\nprint(np.array([1]).ctypes.data)"),
    A("typing-get-type-hints", "pivot",
      "import typing\ndef f(x: \"__import__('os').environ['RLM_CANARY_KEY']\"):\n    pass\n"
      "print(typing.get_type_hints(f))"),
    A("operator-attrgetter", "pivot",
      "import operator\nprint(operator.attrgetter('__class__.__subclasses__')(1)())"),
    A("operator-methodcaller", "pivot",
      "import operator\nprint(operator.methodcaller('__reduce_ex__', 2)(1))"),
    # --- import tricks ------------------------------------------------------------------------
    A("dunder-import", "import", "print(__import__('os').environ)"),
    A("import-os", "import", "import os\nprint(os.environ['RLM_CANARY_KEY'])"),
    A("import-importlib", "import",
      "import importlib\nprint(importlib.import_module('os').environ)"),
    A("import-sys-modules", "import", "import sys\nprint(sys.modules['__main__'])"),
    A("from-json-decoder", "import",
      "from json import decoder\nprint(decoder.scanstring, decoder.json)"),
    A("import-submodule", "import", "import os.path\nprint(os.path)"),
    A("import-builtins", "import",
      "import builtins\nprint(builtins.open('{FILE}').read())"),
    A("loader-spec", "import", "print(__loader__, __spec__)"),
    A("relative-import", "import", "from . import secret\nprint(secret)"),
    A("import-main", "import", "import __main__\nprint(__main__.RLM_NOTEBOOK_SECRET)"),
    A("from-re-enum", "import", "from re import enum\nprint(enum.sys)"),
    # --- builtins tampering -------------------------------------------------------------------
    A("builtins-dict", "builtins", "print(__builtins__['open']('{FILE}').read())"),
    A("open-builtin", "builtins", "print(open('{FILE}').read())"),
    A("eval-exec-compile", "builtins",
      "print(eval('1'))\nexec('print(2)')\nprint(compile('1', 'x', 'exec'))"),
    A("getattr-builtins-module", "builtins",
      "print(getattr(print, '__module__'), getattr(len, '__self__'))"),
    A("breakpoint-help-input", "builtins", "help()\ninput()\nbreakpoint()"),
    A("overwrite-final-then-use", "builtins",
      "FINAL = None\nllm_query = None\nSHOW_VARS = 1"),
    # --- pickle, marshal, code objects --------------------------------------------------------
    A("import-pickle", "code", "import pickle\nprint(pickle.loads(b'cos\\nsystem\\n.'))"),
    A("import-marshal", "code", "import marshal\nprint(marshal)"),
    A("code-object", "code",
      "def f():\n    pass\nc = getattr(f, '__code__')\nprint(c.co_consts)"),
    A("import-types-ctypes", "code", "import types\nimport ctypes\nprint(types, ctypes)"),
    # --- environment and keys ---------------------------------------------------------------
    A("env-via-pandas-read", "env",
      "import pandas as pd\nprint(pd.read_csv('/proc/self/environ'))"),
    A("env-proc-environ-open", "env", "print(open('/proc/self/environ').read())"),
    A("env-via-host-fn-args", "env",
      "print(llm_query('${RLM_CANARY_KEY} $OPENAI_API_KEY %(RLM_CANARY_KEY)s'))"),
    # --- the notebook's namespace -------------------------------------------------------------
    A("get-ipython", "notebook", "print(get_ipython().user_ns)"),
    A("main-globals", "notebook", "print(RLM_NOTEBOOK_SECRET)"),
    A("sys-modules-main", "notebook",
      "import re\nprint(re.enum.sys.modules['__main__'].RLM_NOTEBOOK_SECRET)"),
    # --- files --------------------------------------------------------------------------------
    A("pathlib-read", "files", "import pathlib\nprint(pathlib.Path('{FILE}').read_text())"),
    A("io-open", "files", "import io\nprint(io.open('{FILE}').read())"),
    A("pandas-to-csv-write", "files",
      "import pandas as pd\npd.DataFrame({'a': [1]}).to_csv('{DIR}/pwned.csv')"),
    A("pandas-string-method-write", "files",
      "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\n"
      "df.agg('to_pickle', '{DIR}/pwned.pkl')\ndf.pipe('to_csv', '{DIR}/pwned2.csv')"),
    A("pandas-eval-query", "files",
      "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\n"
      "print(df.eval('a.__class__', engine='python'))\nprint(df.query('a > 0'))"),
    A("numpy-tofile", "files",
      "import numpy as np\nnp.array([1]).tofile('{DIR}/pwned.bin')"),
    A("numpy-load-save", "files", "import numpy as np\nnp.save('{DIR}/pwned.npy', [1])\n"
      "print(np.load('{FILE}'))"),
    A("shutil-glob-tempfile", "files",
      "import shutil\nimport glob\nimport tempfile\nprint(glob.glob('{DIR}/*'))"),
    A("pandas-to-string-buf", "files",
      "import pandas as pd\npd.Series([1]).to_string('{DIR}/pwned.txt')"),
    # --- network ------------------------------------------------------------------------------
    A("socket", "network",
      "import socket\ns = socket.create_connection(('127.0.0.1', 22))"),
    A("urllib", "network",
      "import urllib.request\nprint(urllib.request.urlopen('http://127.0.0.1/').read())"),
    A("http-client", "network", "import http.client\nprint(http.client)"),
    # --- tampering with host functions --------------------------------------------------------
    A("host-fn-setattr", "host",
      "llm_query.client = 1\nprint(llm_query('x'))"),
    A("host-fn-non-json", "host", "print(llm_query(print))\nprint(llm_query(FINAL))"),
    A("host-fn-huge-arg", "host", "print(len(llm_query('x' * 40_000_000)))"),
    A("answer-tamper", "host",
      "answer.clear()\nanswer['ready'] = 'yes'\nanswer['content'] = FINAL"),
    A("final-str-subclass", "host",
      "class S(str):\n    def __str__(self):\n        return self\nFINAL(S('x'))"),
    # --- resource bombs -----------------------------------------------------------------------
    A("python-loop", "resources", "while True:\n    pass", hangs=True),
    A("loop-catching-timeout", "resources",
      "while True:\n    try:\n        while True:\n            pass\n"
      "    except BaseException:\n        pass\n    finally:\n        pass", hangs=True),
    A("c-level-loop", "resources", "print(sum(range(10**15)))", c_level=True, hangs=True),
    A("regex-backtracking", "resources",
      "import re\nprint(re.match(r'(a+)+$', 'a' * 60 + 'b'))", c_level=True, hangs=True),
    A("huge-str-repeat", "resources", "x = 'a' * 10**11"),
    A("huge-list-repeat", "resources", "x = [0] * 10**11"),
    A("huge-pow", "resources", "x = 2 ** 10**11"),
    A("huge-shift", "resources", "x = 1 << 10**11"),
    A("huge-pow-builtin", "resources", "x = pow(10, 10**11)"),
    A("huge-factorial", "resources", "import math\nx = math.factorial(10**9)"),
    A("huge-bytes", "resources", "x = bytes(10**12)\ny = bytearray(10**12)"),
    A("huge-ljust", "resources", "x = 'a'.ljust(10**12)"),
    A("huge-format-width", "resources", "x = f'{1:>{10**11}}'\ny = '%*d' % (10**11, 1)"),
    A("huge-augassign", "resources", "x = 'ab'\nx *= 10**11"),
    A("memory-growth", "resources",
      "x = []\nwhile True:\n    x.append(' ' * 10**7)"),
    A("deep-recursion", "resources", "def f(n):\n    return f(n + 1)\nf(0)"),
    A("deep-nesting-repr", "resources",
      "a = []\nfor i in range(200000):\n    a = [a]\nprint(a)"),
    A("deep-iterator-chain", "resources",
      "x = iter([1])\nfor i in range(2 * 10**6):\n    x = map(abs, x)\nprint(next(x))",
      c_level=True),
    A("fork-bomb", "resources",
      "import os\nwhile True:\n    os.fork()"),
    A("threads-multiprocessing", "resources",
      "import threading\nimport multiprocessing\nprint(threading, multiprocessing)"),
    A("decimal-huge-int", "resources",
      "from decimal import Decimal\nx = int(Decimal('1e999999999'))", c_level=True, hangs=True),
    A("printed-collector", "builtins", "print('a')\nx = printed\nprint(x * 3)"),
    A("output-flood", "resources", "for i in range(200000):\n    print('x' * 100)"),
    A("generator-finalizer-loop", "resources",
      "def g():\n    try:\n        yield 1\n    finally:\n        while True:\n"
      "            pass\nx = g()\nnext(x)\ndel x\nprint('after')", hangs=True),
    A("str-dunder-loop", "resources",
      "class A:\n    def __str__(self):\n        while True:\n            pass\nFINAL(A())",
      hangs=True),
    # --- kernel killers -----------------------------------------------------------------------
    A("system-exit", "killers", "raise SystemExit(0)"),
    A("keyboard-interrupt", "killers", "raise KeyboardInterrupt"),
    A("exit-quit", "killers", "exit()\nquit()"),
    A("os-exit-pivot", "killers", "import re\nre.enum.sys.modules['os']._exit(0)"),
    A("sys-exit-pivot", "killers", "import datetime\ndatetime.sys.exit(0)"),
    A("base-exception-via-mro", "killers",
      "raise ValueError.mro()[2]()"),
    A("generator-exit", "killers", "raise GeneratorExit()"),
    A("signal-module", "killers", "import signal\nsignal.raise_signal(9)"),
]


def _ids() -> list[str]:
    ids = [a.id for a in ATTACKS]
    assert len(ids) == len(set(ids)), "attack ids must be unique"
    return ids


def test_catalogue_is_broad() -> None:
    """At least 60 distinct attacks, covering every category the issue lists."""
    assert len(set(_ids())) >= 60
    cats = {a.category for a in ATTACKS}
    assert cats >= {"introspection", "format", "frames", "pivot", "import", "builtins", "code",
                    "env", "notebook", "files", "network", "host", "resources", "killers"}


def _outputs(r) -> str:  # type: ignore[no-untyped-def]
    return "\n".join([r.stdout or "", r.error or "", r.final or "",
                      str(r.answer.get("content", "")), *r.notes])


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("attack", ATTACKS, ids=_ids())
def test_attack_is_contained(backend: str, attack: Attack, canaries: Canaries) -> None:
    if backend == "inprocess" and attack.c_level:
        pytest.skip("C-level hang/crash: unstoppable in-process by design (SECURITY.md); "
                    "it would freeze this test process")
    code = attack.code.replace("{FILE}", canaries.file).replace("{DIR}", canaries.dir)
    before = canaries.snapshot()
    memory = 256 if backend == "inprocess" else 1536
    with open_sandbox(backend, context="public context", functions=canaries.functions(),
                      timeout_s=2, memory_mb=memory, grace_s=2) as sb:
        r = sb.execute(code)
        out = _outputs(r)
        for secret in canaries.values():
            assert secret not in out, f"{attack.id} leaked a canary: {out[:500]}"
        assert "ESCAPED" not in out
        if attack.hangs:
            assert r.timed_out or r.restarted or r.error, f"{attack.id} was not stopped"
        if r.final is not None:
            assert type(r.final) is str
        assert isinstance(r.answer["ready"], bool)
        # the host is alive and the sandbox still works
        nxt = sb.execute("print(6 * 7, len(context))")
        assert nxt.error is None, f"after {attack.id}: {nxt.error}"
        assert nxt.stdout == "42 14\n"
        out2 = _outputs(nxt)
        for secret in canaries.values():
            assert secret not in out2
    after = canaries.snapshot()
    assert after == before, f"{attack.id} created files: {sorted(after - before)}"


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_get_variable_cannot_hang_or_leak(backend: str, canaries: Canaries) -> None:
    with open_sandbox(backend, context="c", functions=canaries.functions(), timeout_s=2,
                      grace_s=2) as sb:
        r = sb.execute("class A:\n    def __str__(self):\n        while True:\n"
                       "            pass\nx = A()\ny = 'fine'")
        assert r.error is None
        started = time.monotonic()
        value = sb.get_variable("x")
        # x exists: its str() is stopped by the worker's own 5 s limit and reported as failed
        # (not None, as for a missing name), with nothing of the host in it.
        assert time.monotonic() - started < 15
        assert value is not None and value.startswith("<str() of x failed"), value
        for secret in canaries.values():
            assert secret not in value
        assert sb.get_variable("__builtins__") is None
        assert sb.get_variable("_getattr_") is None
        after = sb.execute("print(y)")  # the sandbox still works, its state kept
        assert after.error is None and not after.restarted
        assert after.stdout == "fine\n"


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_worker_environment_is_minimal(backend: str, canaries: Canaries) -> None:
    """Even code that escaped would find no keys: the worker's own environment is scrubbed.
    Checked from the host side, reading the worker process's environment."""
    if backend != "local":
        pytest.skip("process environment check applies to the local worker")
    with open_sandbox("local", context="c", timeout_s=5) as sb:
        pid = sb.pid  # type: ignore[attr-defined]
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = fh.read().decode("utf-8", "replace")
        assert canaries.env not in env and canaries.api_key not in env
        assert "OPENAI_API_KEY" not in env and "RLM_CANARY_KEY" not in env
        with open(f"/proc/{pid}/limits") as fh:
            limits = fh.read()
        fsize = [line for line in limits.splitlines() if line.startswith("Max file size")][0]
        assert fsize.split()[3] == "0"
        core = [line for line in limits.splitlines() if line.startswith("Max core")][0]
        assert core.split()[4] == "0"
        aspace = [line for line in limits.splitlines() if line.startswith("Max address")][0]
        assert aspace.split()[3] != "unlimited"
        import os
        assert os.getsid(pid) == pid  # its own session: killable as a group


def test_landlock_contains_a_policy_escape(canaries: Canaries, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Defence in depth: simulate code that got past the policy (a Python 3.9 worker runs
    unrestricted with ``allow_unrestricted=True``) and check what the OS still refuses."""
    import glob
    import os

    pythons = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3")))
    if not pythons:
        pytest.skip("needs a Python 3.9 interpreter to run an unrestricted worker")
    with open_sandbox("local", context="c", python=pythons[0], allow_unrestricted=True,
                      timeout_s=10) as sb:
        if not sb.worker_info.get("landlock"):  # type: ignore[attr-defined]
            pytest.skip("Landlock is not available on this kernel")
        escape = ("g = [c for c in ().__class__.__base__.__subclasses__() "
                  "if c.__name__ == '_wrap_close'][0].__init__.__globals__\n")
        r = sb.execute(escape + "print(sorted(g['environ']))")
        assert r.error is None and "HOME" in r.stdout  # the escape itself works here
        assert "RLM_CANARY_KEY" not in r.stdout and "OPENAI_API_KEY" not in r.stdout
        for path in (canaries.file, f"/proc/{os.getpid()}/environ", os.path.expanduser("~")):
            r = sb.execute(escape + f"fd = g['open']({path!r}, 0)\nprint(g['read'](fd, 100))")
            assert "PermissionError" in (r.error or ""), (path, r)
        target = str(tmp_path / "pwned.txt")
        r = sb.execute(escape + f"g['open']({target!r}, g['O_WRONLY'] | g['O_CREAT'])")
        assert "PermissionError" in (r.error or "") and not os.path.exists(target)
        if sb.worker_info.get("landlock", 0) >= 4:  # type: ignore[attr-defined]
            r = sb.execute(escape + "socket = g['__builtins__']['__import__']('socket')\n"
                           "x = socket.socket(2, 1)\nx.connect(('127.0.0.1', 9))")
            assert "PermissionError" in (r.error or ""), r  # refused before any packet
