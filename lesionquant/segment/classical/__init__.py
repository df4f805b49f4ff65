"""The classical method: thresholds, morphology and connected components.

The baseline and the fallback of the learned model. Split by concern, each module with
its code and a frozen config dataclass of its tuned numbers (one line of reason per
field; the measured before/after in ``docs/method.md``):

====================  ==========================================================
lung stage            :mod:`._lungs` (:class:`ClassicalLungs`, the full-resolution
                      surface), :mod:`._air` (air and body, which components are
                      lung), :mod:`._airway` (trachea, main bronchi, hilum),
                      :mod:`._free_gas` (stomach and bowel gas), :mod:`._split`
                      (right / left), :mod:`._dense` (dense-lung recovery)
lesion stage          :mod:`._lesions` (:class:`ClassicalLesions`),
                      :mod:`._filters` (vessels, fissures, rim, dependent density),
                      :mod:`._regimes` (single thick slices, thick 3D, coarse pixels)
shared ideas          :mod:`._aeration` (normally aerated share; between the lungs)
====================  ==========================================================

``Settings.classical_lungs`` and ``Settings.classical_lesions`` hold the configs, so a
result's ``settings`` records every number that made it.
"""

from __future__ import annotations

from lesionquant.segment._contract import Implementation
from lesionquant.segment.classical._lesions import ClassicalLesions, lesion_stage
from lesionquant.segment.classical._lungs import ClassicalLungs, lung_stage

__all__ = ["IMPLEMENTATION", "ClassicalLesions", "ClassicalLungs", "lesion_stage", "lung_stage"]

#: The classical method's stages (no weights).
IMPLEMENTATION = Implementation(lungs=lung_stage, lesions=lesion_stage)
