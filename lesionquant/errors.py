"""The exception hierarchy of lesionquant.

Every failure caused by bad input is raised as a subclass of :class:`LesionQuantError`
whose message is one line naming the input and the problem (and the fix, where there
is one). Programming mistakes by callers (wrong argument types) stay ``TypeError`` /
``ValueError``.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousInputError",
    "DicomDecodeError",
    "GeometryError",
    "ImplausibleValueError",
    "IncompleteSeriesError",
    "InvalidInputError",
    "LesionQuantError",
    "NoLungError",
    "NoSeriesError",
    "NotCTError",
    "OutputExistsError",
    "UnsupportedDicomError",
    "WeightsError",
]


class LesionQuantError(Exception):
    """Base class of every error lesionquant raises for bad input or environment.

    Parameters
    ----------
    source : str or os.PathLike, optional
        The input (file, folder or description) the problem was found in.
    message : str
        What is wrong, one line.
    """

    def __init__(self, message: str, *, source: object | None = None) -> None:
        self.source = None if source is None else str(source)
        self.problem = " ".join(str(message).split())  # force one line
        text = self.problem if self.source is None else f"{self.source}: {self.problem}"
        super().__init__(text)


class InvalidInputError(LesionQuantError):
    """The input cannot be read: missing, empty, truncated, not an image, unsafe size."""


class AmbiguousInputError(InvalidInputError):
    """The input holds several scans (patients or studies) where one was expected."""


class NoSeriesError(InvalidInputError):
    """No usable CT series was found in the input (or the requested UID is absent)."""


class DicomDecodeError(InvalidInputError):
    """A DICOM file's pixel data could not be decoded."""


class UnsupportedDicomError(InvalidInputError):
    """A DICOM object that lesionquant refuses by design (SEG, derived map, non-CT, ...)."""


class NotCTError(InvalidInputError):
    """The image is not calibrated CT in Hounsfield units."""


class GeometryError(InvalidInputError):
    """Slice geometry is inconsistent (conflicting duplicates, non-parallel slices, ...)."""


class IncompleteSeriesError(GeometryError):
    """A slice of the series is missing, unreadable or cut (quantify it anyway only with
    ``allow_incomplete=True`` / ``--allow-incomplete-series``)."""


class ImplausibleValueError(InvalidInputError):
    """A header value is outside its documented physical range, or is not a number
    (PixelSpacing, SliceThickness, RescaleSlope, RescaleIntercept; see ``docs/loader.md``)."""


class NoLungError(LesionQuantError):
    """The scan holds no (or too little) lung to quantify."""


class WeightsError(LesionQuantError):
    """Model weights are missing, corrupt or do not match their checksum."""


class OutputExistsError(LesionQuantError):
    """An output already exists and overwriting was not requested."""
