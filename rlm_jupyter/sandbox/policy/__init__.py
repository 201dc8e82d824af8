"""The sandbox policy: what model-written code may touch, and the REPL that enforces it.

Why one package for all of it: the same rules must hold in the local worker, inside a container
and in the in-process thread. This package is therefore standard-library only, with no imports
from the rest of ``rlm_jupyter`` and only relative imports inside it, and stays Python 3.9
compatible: the host ships its sources to the worker (see ``protocol.shipped_modules``, where it
is imported as the package ``rlm_sandbox_policy``), so a container needs nothing installed but
Python.

Layers, outermost first:

* RestrictedPython (``compile_restricted_exec`` with :class:`RLMPolicy`, :mod:`.transformer`)
  rewrites attribute access, item access, iteration, unpacking, augmented assignment, ``print``
  and class creation into calls to the guards below, and refuses names that start with ``_`` at
  compile time. :class:`RLMPolicy` adds deadline checks at loop heads, function entry and every
  ``except``/``finally`` handler, size guards on ``*``, ``**`` and ``<<``, augmented assignment
  of items and attributes (``counts[k] += 1``), and echo of a trailing expression.
* The guards (:mod:`.guards`, :mod:`.limits`) refuse private names, frame/code/traceback/module
  values, unsafe ``format``, and results too big for the sandbox.
* Module facades (:mod:`.facade`, :mod:`.facades`, :mod:`.facades_data`) hold functions, classes
  and constants picked by hand, never a module.
* pandas objects pass an attribute allow-list (:mod:`.pandas_rules`: no ``eval``/``query``, no
  file writers).

The modules, lowest first: ``rules`` (what is never handed out; type classification),
``limits`` (deadline, size guards), ``transformer`` (compile-time policy), ``pandas_rules``,
``printing``, ``facade``, ``facades_data``, ``facades``, ``builtins`` (the sandbox's built-ins),
``guards`` (run-time access guards), ``repl`` (the REPL runtime). This module re-exports every
name the single-file ``policy.py`` had, so ``from rlm_jupyter.sandbox.policy import Repl`` and
friends keep working.
"""

from __future__ import annotations

from .rules import (_CAPSULE_TYPE, EXTRA_DUNDERS, FORBIDDEN_VALUE_TYPES, _is_numpy, _is_pandas,
                    _is_raw_memory, _kind, _KIND_CACHE, _MISSING, NAMEDTUPLE_ATTRS,
                    _RAW_MEMORY_MODULES, RAW_MEMORY_NAMES, _REFUSED_NAMES, SAFE_DUNDER_ATTRS,
                    _type_module)
from .limits import (_BIG_WIDTH, check_format_spec, _count_tabs, Deadline, DEFAULT_LIMITS,
                     _exact_bits, _INPLACE, _int_exponent, _PADDERS, _range_len, SandboxAbort,
                     SandboxTimeout, _TEXT_GROWERS)
from .transformer import (compile_restricted_exec, CompileFailed, HAVE_RESTRICTED,
                          INSPECT_ATTRIBUTES, RestrictingNodeTransformer)
from .pandas_rules import (_checked_func_method, _LibraryWriter, _named_agg, _no_path,
                           NUMPY_DENIED, NUMPY_WRITE_DENIED, PANDAS_ALLOWED, _pandas_column,
                           PANDAS_FUNC_FUNCTIONS, PANDAS_FUNC_METHODS, PANDAS_PATH_METHODS,
                           PANDAS_STRICT_DENIED, SAFE_FUNC_NAMES, _safe_funcs, _static_attr,
                           _WIN_TYPES)
from .printing import PrintCollector, _PrintProxy
from .facade import Facade, _pick
from .facades_data import _fac_numpy, _fac_pandas, _RNG_METHODS
from .facades import (ALLOWED_MODULES, _fac_bisect, _fac_collections, _fac_dataclasses,
                      _fac_datetime, _fac_decimal, _fac_difflib, _fac_fractions, _fac_functools,
                      _fac_heapq, _fac_itertools, _fac_json, _fac_math, _fac_operator, _fac_random,
                      _fac_re, _fac_statistics, _fac_string, _fac_textwrap, _fac_typing,
                      _FACADE_BUILDERS, _SafeDispatch)
from .builtins import _apply, HostFunction, _SAFE_BUILTIN_NAMES, _type_of
from .guards import _FAST_SPECIAL, _FAST_TYPES, _SafeFormatter, _WRITABLE_TYPES
from .repl import _cap, _exact_str, _NS_DUNDERS, Repl, _REPL_COUNTER, _truthy_flag

if HAVE_RESTRICTED:
    from .transformer import RLMPolicy
