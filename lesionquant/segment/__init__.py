"""Segmentation stages: scan image -> lung masks -> lesion label map.

Both stages take and return :class:`SimpleITK.Image` objects in the scan's geometry.

* :func:`segment_lungs` -> ``uint8`` 0 background, 1 right lung, 2 left lung.
* :func:`segment_lesions` -> ``uint8`` 0 background, 1 right lung, 2 left lung, 3 GGO,
  4 consolidation (lesion voxels are lung voxels).
* :func:`resolve_device` -> ``"cpu"`` or ``"cuda:N"`` (for the learned model).
"""

from __future__ import annotations

from lesionquant.segment._device import DeviceError, resolve_device
from lesionquant.segment._lesions import segment_lesions
from lesionquant.segment._lungs import segment_lungs

__all__ = ["DeviceError", "resolve_device", "segment_lesions", "segment_lungs"]
