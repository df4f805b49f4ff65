"""Ground truth we generate: chest CT phantoms, COVID-19 lesion insertion, DICOM writing.

Stable public API (documented at the top of ``docs/synth.md``):

* :class:`LesionParams` - every parameter of the v2 lesion model (fitted to real
  COVID-19 CT), a frozen record.
* :func:`make_phantom` - a procedural full chest CT with exact lung, airway, lesion and
  effusion volumes; ``lesions=LesionParams(...)`` selects the v2 generator (label map
  0 background, 1 right lung, 2 left lung, 3 GGO, 4 consolidation, 5 airway,
  6 pleural effusion).
* :func:`insert_lesions` - the same lesions inserted into a real CT inside a lung mask.
* :func:`family_cases` - the tuning / report / shifted case families of the evaluation.
* :func:`write_dicom_series` / :func:`write_labels_nifti` - write what ``lesionquant.io``
  reads back (optionally tilted or JPEG 2000 / RLE compressed).

See ``docs/synth.md`` for the models, their calibration against real COVID-19 CT and
their limits.
"""

from __future__ import annotations

from lesionquant.synth._dicom_writer import write_dicom_series, write_labels_nifti
from lesionquant.synth._disease import KINDS, LesionParams
from lesionquant.synth._families import (
    FAMILIES,
    SHIFTED_RANGES,
    TUNING_RANGES,
    SynthCase,
    family_cases,
)
from lesionquant.synth._insert import insert_lesions
from lesionquant.synth._phantom import make_phantom
from lesionquant.synth._results import Insertion, Phantom

__all__ = [
    "FAMILIES",
    "KINDS",
    "SHIFTED_RANGES",
    "TUNING_RANGES",
    "Insertion",
    "LesionParams",
    "Phantom",
    "SynthCase",
    "family_cases",
    "insert_lesions",
    "make_phantom",
    "write_dicom_series",
    "write_labels_nifti",
]
