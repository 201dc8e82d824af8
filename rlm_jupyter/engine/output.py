"""Typed answers: what ``output_type=T`` asks of the model, and how the host checks it.

The model finishes with a variable (``FINAL_VAR(name)``); the sandbox copies that variable out
as plain JSON (``sandbox/values.py``: never a pickle, never a live object), and the host
validates it with pydantic's ``TypeAdapter``. A value that does not fit is not an answer: the
model gets the validation error and another turn, at most ``max_repairs`` times, then the run
ends with :class:`OutputValidationError`. pydantic is imported only when a type is asked for.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rlm_jupyter import errors

TAG = "__rlm_type__"  # the same tag sandbox/values.py writes
#: How much of a JSON schema goes into the prompt (a big model's schema is mostly noise).
SCHEMA_CHARS = 2_000
#: The largest value a typed answer or ``get`` copies out of the sandbox by default (chars).
DEFAULT_MAX_CHARS = 2_000_000


class OutputValidationError(errors.RLMError):
    """The model's final value did not fit ``output_type``, after every repair turn."""

    def __init__(self, message: str, *, value: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.value = value


class ValueTransferError(errors.RLMError):
    """A sandbox variable could not be copied out (not plain data, too large, missing)."""


def _is_dataframe_type(tp: Any) -> bool:
    return getattr(tp, "__name__", "") == "DataFrame" and \
        str(getattr(tp, "__module__", "")).startswith("pandas")


def from_plain(value: Any, *, frames: bool = True) -> Any:
    """Turn tagged DataFrames/Series from the sandbox back into pandas objects (``frames``)
    or into plain records (a list of row dicts) for a non-pandas target type."""
    if isinstance(value, list):
        return [from_plain(v, frames=frames) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag == "DataFrame":
        columns, index, data = value.get("columns", []), value.get("index", []), value["data"]
        if not frames:
            return [dict(zip((str(c) for c in columns), row)) for row in data]
        import pandas as pd

        frame = pd.DataFrame(data, index=index, columns=columns)
        for column, dtype in zip(columns, value.get("dtypes") or []):
            try:
                if dtype.startswith(("datetime64", "timedelta64", "int", "float", "bool")):
                    frame[column] = frame[column].astype(dtype)
            except (TypeError, ValueError):
                pass  # a column with missing values keeps pandas' own choice
        return frame
    if tag == "Series":
        if not frames:
            return list(value.get("data", []))
        import pandas as pd

        return pd.Series(value.get("data", []), index=value.get("index"),
                         name=value.get("name"))
    return {k: from_plain(v, frames=frames) for k, v in value.items()}


def type_label(tp: Any) -> str:
    """``list[int]``, ``Invoice``, ``pandas.DataFrame``: how the prompt and errors name T."""
    if _is_dataframe_type(tp):
        return "pandas.DataFrame"
    if isinstance(tp, type) and not getattr(tp, "__args__", None):
        return tp.__name__
    return re.sub(r"\b(typing|builtins)\.", "", repr(tp))


class OutputSpec:
    """One ``output_type``: its prompt text and its validator (built once per run)."""

    def __init__(self, output_type: Any, max_repairs: int = 2) -> None:
        self.type = output_type
        self.max_repairs = int(max_repairs)
        self.label = type_label(output_type)
        self.dataframe = _is_dataframe_type(output_type)
        self._adapter: Any = None
        if not self.dataframe:
            try:
                from pydantic import TypeAdapter

                self._adapter = TypeAdapter(output_type)
            except Exception as exc:  # noqa: BLE001 - pydantic's errors vary by type
                raise errors.ConfigError(
                    f"output_type={self.label} cannot be validated: {exc}. Use a pydantic "
                    f"model, a dataclass, a TypedDict, int/float/bool/str, list[...] or "
                    f"dict[str, ...] of those, or pandas.DataFrame.") from None

    def schema_text(self) -> str:
        if self.dataframe:
            return ""
        try:
            schema = json.dumps(self._adapter.json_schema(), separators=(",", ":"))
        except Exception:  # noqa: BLE001 - a type without a JSON schema still validates
            return ""
        return schema if len(schema) <= SCHEMA_CHARS else schema[:SCHEMA_CHARS] + "..."

    def instructions(self) -> str:
        """The paragraph the root prompt gets: the shape, and how to finish."""
        from rlm_jupyter.engine import prompts

        if self.dataframe:
            shape = ("a pandas DataFrame (build it with pandas, or as a list of row dicts)")
        else:
            schema = self.schema_text()
            shape = f"a value of type {self.label}" + (
                f" matching this JSON schema: {schema}" if schema else "")
        return prompts.OUTPUT_TYPE_NOTE.format(shape=shape)

    def validate(self, plain: Any) -> Any:
        """The typed value, or raise ``ValueError`` with pydantic's message."""
        if self.dataframe:
            value = from_plain(plain, frames=True)
            import pandas as pd

            if isinstance(value, pd.DataFrame):
                return value
            if isinstance(value, list) and all(isinstance(r, dict) for r in value):
                return pd.DataFrame(value)
            if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
                return pd.DataFrame(value)
            raise ValueError(f"expected a DataFrame (or a list of row dicts), got "
                             f"{type(value).__name__}")
        from pydantic import ValidationError

        try:
            return self._adapter.validate_python(from_plain(plain, frames=False))
        except ValidationError as exc:
            raise ValueError(_short_errors(exc)) from None

    def validate_text(self, text: str) -> Any:
        """A typed value from a ``FINAL(text)`` answer: JSON first, then the text itself (so
        ``FINAL(42)`` fits ``int`` and ``FINAL(yes)`` fits ``str``)."""
        try:
            return self.validate(json.loads(text))
        except (ValueError, TypeError) as first:
            if self.dataframe:
                raise first
            return self.validate(text)


def _short_errors(exc: Any, limit: int = 8) -> str:
    lines = []
    for item in exc.errors()[:limit]:
        where = ".".join(str(p) for p in item.get("loc", ())) or "value"
        lines.append(f"{where}: {item.get('msg')} (got {str(item.get('input'))[:80]!r})")
    more = len(exc.errors()) - limit
    if more > 0:
        lines.append(f"... and {more} more")
    return "; ".join(lines)


def copy_out(sandbox: Any, name: str, max_chars: int = DEFAULT_MAX_CHARS) -> Any:
    """A sandbox variable by value (plain data; DataFrames as pandas objects), or raise
    :class:`ValueTransferError` saying why and what to do."""
    return from_plain(fetch_plain(sandbox, name, max_chars), frames=True)


def fetch_plain(sandbox: Any, name: str, max_chars: int = DEFAULT_MAX_CHARS) -> Any:
    """A sandbox variable as the JSON data the sandbox sent (DataFrames still tagged)."""
    getter = getattr(sandbox, "get_json", None)
    if getter is None:
        raise ValueTransferError(f"the {getattr(sandbox, 'kind', '?')} sandbox cannot copy "
                                 f"values out")
    try:
        reply = getter(name, max_chars)
    except Exception as exc:  # noqa: BLE001 - a dead worker, a closed sandbox
        raise ValueTransferError(f"cannot copy {name!r} out of the sandbox: {exc}") from None
    if not reply.get("ok"):
        raise ValueTransferError(f"cannot copy {name!r} out of the sandbox: {reply.get('error')}")
    return reply.get("value")
