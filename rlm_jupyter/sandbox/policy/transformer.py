"""The compile-time policy: RestrictedPython's transformer plus deadline checks and size guards.

RestrictedPython (``compile_restricted_exec`` with :class:`RLMPolicy`) rewrites attribute
access, item access, iteration, unpacking, augmented assignment, ``print`` and class creation
into calls to the guards, and refuses names that start with ``_`` at compile time.
:class:`RLMPolicy` adds ``_tick_`` deadline checks, the ``_mul_``/``_pow_``/``_lshift_``/``_mod_``
size guards, augmented assignment of items and attributes, and echo of a trailing expression.
"""

from __future__ import annotations

import ast
from typing import Any, List, Optional

from .rules import EXTRA_DUNDERS, NAMEDTUPLE_ATTRS, SAFE_DUNDER_ATTRS

try:  # The worker may run where RestrictedPython cannot be imported (Python 3.9 images).
    from RestrictedPython import compile_restricted_exec
    from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer

    HAVE_RESTRICTED = True
except Exception:  # pragma: no cover - exercised only on old interpreters
    HAVE_RESTRICTED = False
    compile_restricted_exec = None  # type: ignore[assignment]
    RestrictingNodeTransformer = object  # type: ignore[assignment,misc]
    INSPECT_ATTRIBUTES = frozenset([
        "tb_frame", "tb_next", "f_back", "f_builtins", "f_code", "f_generator", "f_globals",
        "f_locals", "f_trace", "co_code", "gi_frame", "gi_code", "gi_yieldfrom", "cr_await",
        "cr_frame", "cr_code", "cr_origin", "ag_await", "ag_frame", "ag_code",
    ])


class CompileFailed(Exception):
    """The cell did not compile or broke a compile-time rule."""


if HAVE_RESTRICTED:

    def _call(name: str, args: List[ast.expr], node: ast.AST) -> ast.Call:
        call = ast.Call(func=ast.Name(name, ast.Load()), args=args, keywords=[])
        ast.copy_location(call, node)
        ast.fix_missing_locations(call)
        return call

    def _tick_stmt(node: ast.AST) -> ast.Expr:
        stmt = ast.Expr(value=_call("_tick_", [], node))
        ast.copy_location(stmt, node)
        ast.fix_missing_locations(stmt)
        return stmt

    _BINOP_GUARDS = {ast.Mult: "_mul_", ast.Pow: "_pow_", ast.LShift: "_lshift_",
                     ast.Mod: "_mod_"}

    class RLMPolicy(RestrictingNodeTransformer):  # type: ignore[misc,valid-type]
        """RestrictedPython's transformer plus deadline checks and size guards."""

        def check_name(self, node: Any, name: Optional[str], allow_magic_methods: bool = False
                       ) -> None:
            if (allow_magic_methods and name in EXTRA_DUNDERS
                    and getattr(node, "col_offset", 0) != 0):
                return
            super().check_name(node, name, allow_magic_methods)

        def visit_For(self, node: ast.For) -> Any:
            node = super().visit_For(node)
            node.body.insert(0, _tick_stmt(node))
            return node

        def visit_While(self, node: ast.While) -> Any:
            node = super().visit_While(node)
            node.body.insert(0, _tick_stmt(node))
            return node

        def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
            node = super().visit_FunctionDef(node)
            first = node.body[0] if node.body else None
            has_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                       and isinstance(first.value.value, str))
            node.body.insert(1 if has_doc else 0, _tick_stmt(node))
            return node

        def visit_ExceptHandler(self, node: ast.ExceptHandler) -> Any:
            node = super().visit_ExceptHandler(node)
            node.body.insert(0, _tick_stmt(node))
            return node

        def visit_Try(self, node: ast.Try) -> Any:
            node = super().visit_Try(node)
            if node.finalbody:
                node.finalbody.insert(0, _tick_stmt(node))
            return node

        def visit_Lambda(self, node: ast.Lambda) -> Any:
            """``lambda x: body`` becomes ``lambda x: _tick_() or body``: the same deadline
            check as a ``def`` (``any(map(lambda x: ..., itertools.count()))``)."""
            node = super().visit_Lambda(node)
            body = ast.BoolOp(op=ast.Or(), values=[_call("_tick_", [], node.body), node.body])
            ast.copy_location(body, node.body)
            node.body = body
            return node

        def visit_comprehension(self, node: ast.comprehension) -> Any:
            node = super().visit_comprehension(node)
            node.iter = _call("_tickiter_", [node.iter], node.iter)
            return node

        def visit_BinOp(self, node: ast.BinOp) -> Any:
            node = super().visit_BinOp(node)
            guard = _BINOP_GUARDS.get(type(node.op))
            if guard is None:
                return node
            return _call(guard, [node.left, node.right], node)

        def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:
            """``x: int = 5`` (RestrictedPython refuses it; dataclasses need it). The target
            and the annotation are checked and rewritten like any other expression."""
            if isinstance(node.target, ast.Attribute) and node.value is not None:
                assign = ast.Assign(targets=[node.target], value=node.value)
                ast.copy_location(assign, node)
                return self.visit_Assign(assign)
            return self.node_contents_visit(node)

        def visit_Attribute(self, node: ast.Attribute) -> Any:
            if (node.attr in SAFE_DUNDER_ATTRS or node.attr in NAMEDTUPLE_ATTRS) and \
                    isinstance(node.ctx, ast.Load):
                value = self.visit(node.value)
                return _call("_getattr_", [value, ast.Constant(node.attr)], node)
            return super().visit_Attribute(node)

        def visit_FormattedValue(self, node: ast.FormattedValue) -> Any:
            node = super().visit_FormattedValue(node)
            if node.format_spec is not None:
                spec = node.format_spec
                checked = ast.FormattedValue(value=_call("_spec_", [spec], spec),
                                             conversion=-1, format_spec=None)
                ast.copy_location(checked, spec)
                node.format_spec = ast.JoinedStr(values=[checked])
                ast.copy_location(node.format_spec, spec)
            return node

        def visit_AugAssign(self, node: ast.AugAssign) -> Any:
            from RestrictedPython.transformer import IOPERATOR_TO_STR
            if isinstance(node.target, ast.Subscript):
                node = self.node_contents_visit(node)
                target = node.target
                op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
                new = ast.Expr(value=_call("_aug_item_", [target.value, target.slice, op,
                                                          node.value], node))
                ast.copy_location(new, node)
                return new
            if isinstance(node.target, ast.Attribute):
                node = self.node_contents_visit(node)
                target = node.target
                if target.attr.startswith("_"):
                    self.error(node, f'"{target.attr}" is an invalid attribute name because it '
                                     'starts with "_"')
                    return node
                op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
                new = ast.Expr(value=_call("_aug_attr_", [target.value,
                                                          ast.Constant(target.attr), op,
                                                          node.value], node))
                ast.copy_location(new, node)
                return new
            return super().visit_AugAssign(node)

        def visit_Module(self, node: ast.Module) -> Any:
            node = super().visit_Module(node)
            if node.body and isinstance(node.body[-1], ast.Expr):
                last = node.body[-1]
                last.value = _call("_echo_", [last.value], last)
            return node
