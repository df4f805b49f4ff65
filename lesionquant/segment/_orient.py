"""Work on an image re-oriented to LPS, and go back exactly.

:func:`to_lps` gives an image with identity direction up to axis flips/permutations, so
that in the numpy view ``(z, y, x)`` the index grows towards patient superior, posterior
and left; :func:`from_lps` returns results to the scan's own orientation (flips and
permutations only, no resampling).
"""

from __future__ import annotations

import SimpleITK as sitk

__all__ = ["from_lps", "orientation", "to_lps"]


def orientation(image: sitk.Image) -> str:
    """The DICOM orientation code of ``image``'s axes (``"LPS"`` for identity direction)."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def to_lps(image: sitk.Image) -> tuple[sitk.Image, str]:
    """Return ``image`` re-oriented to LPS and the orientation code to undo it."""
    code = orientation(image)
    if code == "LPS":
        return image, code
    return sitk.DICOMOrient(image, "LPS"), code


def from_lps(image: sitk.Image, code: str, reference: sitk.Image) -> sitk.Image:
    """Undo :func:`to_lps` and copy the exact geometry of ``reference``."""
    out = image if code == "LPS" else sitk.DICOMOrient(image, code)
    out.CopyInformation(reference)
    return out
