"""``endpoint.csv``: the trial endpoint table of a batch folder, per patient, change from
baseline of lesion / GGO / consolidation %. The rows and their definitions are
:func:`lesionquant.measure.endpoint_rows` (also in ``docs/batch.md``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lesionquant.batch import _outputs
from lesionquant.batch._tables import iter_results, read_verdicts
from lesionquant.measure import ENDPOINT_COLUMNS, endpoint_rows

__all__ = ["ENDPOINT_COLUMNS", "compute_endpoint", "endpoint_rows"]

logger = logging.getLogger(__name__)

ENDPOINT_CSV = "endpoint.csv"
def compute_endpoint(out_dir: str | os.PathLike[str], *, baseline: Sequence[str] = ()
                     ) -> list[dict[str, Any]]:
    """Build ``OUT/endpoint.csv`` from the committed results of a batch folder.

    Parameters
    ----------
    out_dir : path
        A batch output folder (``lesionquant run ... -o OUT``).
    baseline : sequence of str
        Scan ids to use as baselines; other patients use their first visit.

    Returns
    -------
    list of dict
        The rows written (columns :data:`ENDPOINT_COLUMNS`, definitions in
        :mod:`lesionquant.measure._endpoint`).
    """
    out = Path(out_dir)
    rows = endpoint_rows(iter_results(out), baseline=baseline, verdicts=read_verdicts(out))
    _outputs.write_csv_atomic(out / ENDPOINT_CSV, ENDPOINT_COLUMNS, rows)
    logger.info("%s: %d visit(s) of %d patient(s)", out / ENDPOINT_CSV, len(rows),
                len({r["patient"] for r in rows}))
    return rows
