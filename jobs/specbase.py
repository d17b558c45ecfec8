"""Pieces every edit model shares: the strict base model, `*_ms` aliases and path errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class SpecError(ValueError):
    """A cross-field rule broken at `path` (JSON path, e.g. `operations[2]`, `output.crf`).

    pydantic keeps the exception in the error's context, so the API can name the path.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


def ms_aliases(data: Any, *names: str) -> Any:
    """Accept `start_ms: 1500` (the canonical spelling) as well as `start: 1.5`."""
    if isinstance(data, dict):
        for name in names:
            ms_name = f"{name}_ms"
            if ms_name in data:
                if name in data:
                    raise ValueError(f"give either '{name}' or '{ms_name}', not both")
                value = data[ms_name]
                if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                    raise ValueError(f"'{ms_name}' must be a whole number of milliseconds")
                data = {k: v for k, v in data.items() if k != ms_name}
                data[name] = None if value is None else f"{value}ms"
    return data
