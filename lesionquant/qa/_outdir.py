"""Read a batch output folder ``OUT/`` for the index page and the viewer.

Layout (docs/architecture.md): ``OUT/<scan_id>/result.json`` (+ ``labels.nii.gz``,
``overlay.png``, ``report.html``), ``OUT/errors.csv``, ``OUT/results.csv``,
``OUT/verdicts.json``. Folders whose name starts with ``.`` (temp folders of a running
batch) are ignored, and so are folders without a complete ``result.json``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionquant.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["KEY_NUMBERS", "ScanEntry", "find", "list_scans", "read_errors"]

#: The numbers every QA view shows, in order, with their display label and digits.
KEY_NUMBERS = (
    ("lung_ml", "lung mL", 0),
    ("lesion_pct", "lesion %", 2),
    ("ggo_pct", "GGO %", 2),
    ("consolidation_pct", "consolidation %", 2),
    ("lesion_ml", "lesion mL", 1),
)


def find(doc: Any, key: str, *, depth: int = 3) -> Any:
    """Value of ``key`` at the top of ``doc`` or in its nested mappings (breadth first).

    ``result.json`` keeps the key numbers at the top and the provenance nested; this finds
    either without depending on the exact nesting.
    """
    level = [doc]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            if isinstance(d, Mapping):
                if key in d:
                    return d[key]
                nxt.extend(v for v in d.values() if isinstance(v, Mapping))
        level = nxt
    return None


@dataclass(frozen=True)
class ScanEntry:
    """One completed scan of a batch.

    Attributes
    ----------
    scan_id : str
        Folder name (a pseudonym).
    folder : Path
        ``OUT/<scan_id>``.
    result : dict
        Parsed ``result.json``.
    """

    scan_id: str
    folder: Path
    result: dict[str, Any] = field(repr=False)

    def number(self, key: str) -> float | None:
        """A key number (``lung_ml``, ``lesion_pct``, ...) or ``None``."""
        value = find(self.result, key)
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            return None

    @property
    def warnings(self) -> list[str]:
        """Loader and pipeline warnings recorded in the result."""
        seen: list[str] = []
        for key in ("warnings", "loader_warnings"):
            value = find(self.result, key)
            if isinstance(value, (list, tuple)):
                seen.extend(str(w) for w in value if str(w) not in seen)
        return seen

    @property
    def source(self) -> str:
        """Input path the scan was loaded from; ``""`` when not recorded (the default:
        pseudonymous batches record it only with ``--keep-identifiers``)."""
        value = find(self.result, "source")
        return value if isinstance(value, str) and value and value != "<input>" else ""

    @property
    def series_uid(self) -> str:
        """Input SeriesInstanceUID (``""`` for volume files)."""
        for key in ("series_uid", "series_instance_uid", "input_series_uid"):
            value = find(self.result, key)
            if isinstance(value, str) and value:
                return value
        return ""

    @property
    def method(self) -> str:
        value = find(self.result, "method")
        return str(value) if value is not None else ""

    @property
    def labels_path(self) -> Path:
        return self.folder / "labels.nii.gz"


def list_scans(out_dir: str | Path) -> list[ScanEntry]:
    """Completed scans of ``OUT``, sorted by scan id.

    Raises
    ------
    InvalidInputError
        When ``out_dir`` is not a folder.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise InvalidInputError("batch output folder does not exist", source=out)
    scans = []
    for path in sorted(out.glob("*/result.json")):
        folder = path.parent
        if folder.name.startswith("."):
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            logger.warning("%s: skipped, unreadable result.json (%s)", path, exc)
            continue
        if isinstance(doc, dict):
            scans.append(ScanEntry(folder.name, folder, doc))
    return scans


def read_errors(out_dir: str | Path) -> list[dict[str, str]]:
    """Failed scans and inputs of ``OUT``, fit for shareable pages: ``scan_id``,
    ``series_uid`` and the pseudonymised ``reason`` (no input path; see
    :mod:`lesionquant._deid`). Empty when there is none.

    Read from ``OUT/.errors/*.json`` (the records ``errors.csv`` is rebuilt from), whose
    ``public_reason`` the batch wrote; an ``errors.csv`` alone is pseudonymised here. The
    ``source`` column of ``errors.csv`` is never returned.
    """
    from lesionquant._deid import public_reason

    out = Path(out_dir)
    records: list[dict[str, Any]] = []
    folder = out / ".errors"
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError) as exc:
                logger.warning("%s: unreadable error record (%s)", path, exc)
                continue
            if isinstance(doc, dict):
                records.append(doc)
    else:
        try:
            text = (out / "errors.csv").read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, ValueError, RecursionError) as exc:
            logger.warning("%s: unreadable (%s)", out / "errors.csv", exc)
            return []
        records = [dict(r) for r in csv.DictReader(io.StringIO(text))]
    rows = []
    for r in records:
        reason = r.get("public_reason") or public_reason(str(r.get("reason", "")),
                                                         [str(r.get("source") or "")])
        rows.append({"scan_id": str(r.get("scan_id", "")),
                     "series_uid": str(r.get("series_uid", "") or ""),
                     "reason": public_reason(str(reason))})
    return rows
