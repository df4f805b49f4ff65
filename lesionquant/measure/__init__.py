"""Measurement stage: label map -> numbers (:class:`Result`).

* :func:`measure` turns a label map and the lung sides into the flat measurements.
* :class:`Result` holds them with the label map, the scan and the provenance.
"""

from __future__ import annotations

from lesionquant.measure._measure import measure
from lesionquant.measure._quantify import SCORE_MIN_LESION_PCT, ZONES, zone_score
from lesionquant.measure._result import Provenance, Result

__all__ = ["SCORE_MIN_LESION_PCT", "ZONES", "Provenance", "Result", "measure", "zone_score"]
