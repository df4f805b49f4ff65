"""The label map's codes: one :class:`Label` for every stage, file and viewer.

One convention everywhere (results, ground truth, NIfTI, DICOM SEG, overlays): ``0``
background, ``1`` right lung, ``2`` left lung, ``3`` GGO, ``4`` consolidation. Lesion
voxels are lung voxels too, so the lung is every label from ``1`` to ``4``. Ground truth
from :mod:`lesionquant.synth` may add ``5`` airway (trachea and main bronchi, not lung) and
``6`` pleural effusion (not lung).
Stored as ``uint8``.

>>> int(Label.GGO), Label(4).name
(3, 'CONSOLIDATION')
>>> Label.CONSOLIDATION.is_lesion, Label.LEFT_LUNG.is_lung
(True, True)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["LESION_LABELS", "LUNG_LABELS", "SEGMENT_CODES", "SIDE_LABELS", "Code", "Label",
           "SegmentCode"]


class Label(enum.IntEnum):
    """Codes of the label map (``uint8``)."""

    BACKGROUND = 0
    RIGHT_LUNG = 1
    LEFT_LUNG = 2
    GGO = 3
    """Ground-glass opacity (a lung voxel)."""
    CONSOLIDATION = 4
    """Consolidation (a lung voxel)."""
    AIRWAY = 5
    """Trachea and main bronchi, in synthetic ground truth only (not lung)."""
    EFFUSION = 6
    """Pleural effusion, in synthetic ground truth only (fluid beside the lung, not lung)."""

    @property
    def is_lung(self) -> bool:
        """True for the labels that count as lung (right, left, GGO, consolidation)."""
        return Label.RIGHT_LUNG <= self <= Label.CONSOLIDATION

    @property
    def is_lesion(self) -> bool:
        """True for GGO and consolidation."""
        return self in (Label.GGO, Label.CONSOLIDATION)


#: The two lung sides, in label order.
SIDE_LABELS = (Label.RIGHT_LUNG, Label.LEFT_LUNG)
#: The lesion classes, in label order.
LESION_LABELS = (Label.GGO, Label.CONSOLIDATION)
#: Every label that counts as lung (lesions are lung).
LUNG_LABELS = (*SIDE_LABELS, *LESION_LABELS)


@dataclass(frozen=True)
class Code:
    """A coded concept: ``(value, scheme designator, meaning)`` as DICOM writes it."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class SegmentCode:
    """What the DICOM SEG writer needs to describe one label as a segment."""

    label: str
    category: Code
    type: Code


_ANATOMY = Code("91723000", "SCT", "Anatomical Structure")
_ABNORMAL = Code("49755003", "SCT", "Morphologically Abnormal Structure")

#: Label -> the segment's label, property category and property type (SNOMED CT / DCM).
SEGMENT_CODES: dict[Label, SegmentCode] = {
    Label.RIGHT_LUNG: SegmentCode("Right lung", _ANATOMY, Code("3341006", "SCT", "Right lung")),
    Label.LEFT_LUNG: SegmentCode("Left lung", _ANATOMY, Code("44029006", "SCT", "Left lung")),
    Label.GGO: SegmentCode("Ground-glass opacity", _ABNORMAL,
                           Code("112120", "DCM", "Ground glass opacity")),
    Label.CONSOLIDATION: SegmentCode("Consolidation", _ABNORMAL,
                                     Code("95436008", "SCT", "Lung consolidation")),
}
