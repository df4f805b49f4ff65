"""Frozen, nested configuration dataclasses: dict round trip and dotted replacement.

Every configuration object of :mod:`lesionquant.segment` (the :class:`Settings` and the
classical method's tuned constants) is a frozen dataclass deriving from :class:`Config`:

* :meth:`Config.to_dict` - JSON-ready, nested (enums as their value, tuples as lists);
* :meth:`Config.from_dict` - the inverse; a partial dict changes only the fields it names
  (the rest keep their defaults), unknown keys raise ``ValueError`` naming the key path;
* :meth:`Config.replace` - a validated copy; ``"a.b"`` keys reach into nested configs;
* :meth:`Config.leaf_paths` - the dotted path of every number (for provenance tests).

Pure Python (no numpy), so that ``import lesionquant`` stays light.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, TypeVar

__all__ = ["Config"]

C = TypeVar("C", bound="Config")


def _plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class Config:
    """Mixin of the frozen configuration dataclasses (see the module docstring)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict of every field."""
        return {f.name: _plain(getattr(self, f.name))
                for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, _path: str = "") -> C:
        """Build from a (possibly partial) dict as :meth:`to_dict` writes it."""
        if not isinstance(data, dict):
            raise ValueError(f"setting {_path or cls.__name__} must be a table, not {data!r}")
        default = cls()
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError("unknown setting(s): "
                             + ", ".join(f"{_path}{k}" for k in unknown))
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            current = getattr(default, key)
            if isinstance(current, Config) and isinstance(value, dict):
                value = type(current).from_dict(value, _path=f"{_path}{key}.")
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied (validated again); ``"a.b"`` keys (passed as
        ``**{"a.b": v}``) replace a field of a nested config."""
        direct: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            head, _, rest = key.partition(".")
            if rest:
                nested.setdefault(head, {})[rest] = value
            else:
                direct[key] = value
        for head, sub in nested.items():
            base = direct.get(head, getattr(self, head, None))
            if not isinstance(base, Config):
                raise ValueError(f"unknown setting(s): {head}")
            direct[head] = base.replace(**sub)
        try:
            return dataclasses.replace(self, **direct)  # type: ignore[type-var]
        except TypeError as exc:
            names = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
            bad = ", ".join(sorted(set(direct) - names))
            raise ValueError(f"unknown setting(s): {bad}") from exc

    @classmethod
    def leaf_paths(cls) -> list[str]:
        """Dotted path of every leaf field (nested configs expanded)."""
        default = cls()
        out: list[str] = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            value = getattr(default, f.name)
            if isinstance(value, Config):
                out += [f"{f.name}.{p}" for p in type(value).leaf_paths()]
            else:
                out.append(f.name)
        return out

    def get(self, path: str) -> Any:
        """The value at a dotted ``path`` (e.g. ``"classical_lungs.airway.max_ml"``)."""
        value: Any = self
        for part in path.split("."):
            value = getattr(value, part)
        return value
