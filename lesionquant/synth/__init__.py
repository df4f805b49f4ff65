"""Ground truth we generate: chest CT phantoms, COVID-19 lesion insertion, DICOM writing.

* :func:`make_phantom` - a procedural full chest CT with exact lung, airway and lesion
  volumes (label map 0 background, 1 right lung, 2 left lung, 3 GGO, 4 consolidation,
  5 airway).
* :func:`insert_lesions` - COVID-19-pattern lesions inserted into a real CT inside a lung
  mask, with exact volumes.
* :func:`write_dicom_series` / :func:`write_labels_nifti` - write what ``lesionquant.io``
  reads back (optionally tilted or JPEG 2000 / RLE compressed).

See ``docs/synth.md`` for the models, their calibration against real COVID-19 CT and
their limits.
"""

from __future__ import annotations

from lesionquant.synth._dicom_writer import write_dicom_series, write_labels_nifti
from lesionquant.synth._insert import insert_lesions
from lesionquant.synth._phantom import make_phantom
from lesionquant.synth._results import Insertion, Phantom

__all__ = [
    "Insertion",
    "Phantom",
    "insert_lesions",
    "make_phantom",
    "write_dicom_series",
    "write_labels_nifti",
]
