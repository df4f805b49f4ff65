"""Read one DICOM file's header (never its pixels) into a small, safe summary.

Every value is read defensively: a malformed tag becomes "unknown" (``None`` or ``""``)
instead of an exception from pydicom escaping. The summary also records where the native
pixel data starts in the file, so :mod:`._pixels` can read uncompressed slices straight into
a preallocated volume without parsing the header a second time.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from lesionquant.errors import DicomDecodeError

__all__ = ["CHECKED_NUMBERS", "NATIVE_LE_SYNTAXES", "SliceHeader", "looks_like_dicom",
           "read_header"]

logger = logging.getLogger(__name__)

#: Uncompressed little-endian transfer syntaxes whose pixels are read directly from the file.
NATIVE_LE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})

#: Numeric attributes that change a measured number: a value that is present but not a finite
#: number is an error, not "absent" (a NaN RescaleSlope once became 1 silently).
CHECKED_NUMBERS = ("PixelSpacing", "SliceThickness", "RescaleSlope", "RescaleIntercept")

_PIXEL_DATA_TAG_LE = struct.pack("<HH", 0x7FE0, 0x0010)
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"}


@dataclass(frozen=True)
class SliceHeader:
    """What the loader needs from one DICOM file (one image, or one multi-frame object).

    Values are ``None`` / ``""`` when the tag is absent or malformed. Patient identifiers are
    kept for :class:`lesionquant.scan.Identifiers` but hidden from ``repr``.
    """

    path: str
    sop_class_uid: str = ""
    transfer_syntax: str = ""
    modality: str = ""
    image_type: tuple[str, ...] = ()
    series_uid: str = ""
    study_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    instance_number: int | None = None
    rows: int | None = None
    columns: int | None = None
    frames: int = 1
    samples_per_pixel: int = 1
    photometric: str = ""
    bits_allocated: int | None = None
    bits_stored: int | None = None
    high_bit: int | None = None
    pixel_representation: int = 0
    position: tuple[float, float, float] | None = None
    """ImagePositionPatient (0020,0032), mm, LPS."""
    orientation: tuple[float, ...] | None = None
    """ImageOrientationPatient (0020,0037): row then column direction cosines."""
    pixel_spacing: tuple[float, float] | None = None
    """PixelSpacing (0028,0030): (between rows, between columns), mm."""
    slice_thickness_mm: float | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    has_modality_lut: bool = False
    padding_value: int | None = None
    padding_range_limit: int | None = None
    has_pixel_data: bool = False
    pixel_offset: int | None = None
    """Byte offset of native (uncompressed little-endian) pixel data in the file."""
    pixel_length: int | None = None
    """Length in bytes of native pixel data (``None`` when encapsulated / unknown)."""
    gantry_tilt_deg: float | None = None
    frame_index: int | None = None
    """For one frame of a multi-frame (enhanced) CT object: its index; else ``None``."""
    frame_headers: tuple[SliceHeader, ...] = field(default=(), repr=False)
    """For a multi-frame CT object: one header per frame (from the functional groups)."""
    kernel: str = ""
    manufacturer: str = ""
    model: str = ""
    kvp: float | None = None
    contrast: str | None = None
    patient_id: str = field(default="", repr=False)
    patient_name: str = field(default="", repr=False)
    study_date: str = field(default="", repr=False)
    study_time: str = field(default="", repr=False)
    accession: str = field(default="", repr=False)
    malformed: tuple[str, ...] = ()
    """Keywords of :data:`CHECKED_NUMBERS` present with a value that is not a finite number
    (text, NaN, inf): refused at load, never read as "absent"."""

    @property
    def is_native_le(self) -> bool:
        """True when pixels can be read straight from the file (uncompressed LE, one frame)."""
        return (self.transfer_syntax in NATIVE_LE_SYNTAXES and self.pixel_offset is not None
                and self.pixel_length is not None and self.frames == 1)

    @property
    def label(self) -> str:
        """The file, with the frame number for one frame of a multi-frame object."""
        if self.frame_index is None:
            return self.path
        return f"{self.path} [frame {self.frame_index + 1}]"


def looks_like_dicom(path: str) -> bool:
    """Cheap test: ``DICM`` at byte 128, or a file that starts with a group 0002/0008 tag."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
    except OSError:
        return False
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    # Files without the 128-byte preamble ("raw" DICOM, common in old exports).
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and head[3:4] == b"\x00"


def _get(ds: Any, keyword: str) -> Any:
    try:
        value = ds.get(keyword)
    except Exception:  # malformed value: pydicom raises many types
        logger.debug("%s: unreadable %s", getattr(ds, "filename", "?"), keyword)
        return None
    return None if value is None or value == "" else value


def _str(ds: Any, keyword: str) -> str:
    value = _get(ds, keyword)
    if value is None:
        return ""
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return "/".join(str(v).strip() for v in value)
        return " ".join(str(value).split())
    except Exception:
        return ""


def _int(ds: Any, keyword: str) -> int | None:
    value = _get(ds, keyword)
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0]
        out = int(float(value))
    except Exception:
        return None
    return out


def _float(ds: Any, keyword: str) -> float | None:
    value = _get(ds, keyword)
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0]
        out = float(value)
    except Exception:
        return None
    return out if math.isfinite(out) else None


def _floats(ds: Any, keyword: str, n: int) -> tuple[float, ...] | None:
    value = _get(ds, keyword)
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except Exception:
        return None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        return None
    return out


def _has_value(ds: Any, keyword: str) -> bool:
    """True when ``keyword`` is in ``ds`` with a non-empty (possibly malformed) value."""
    try:
        if keyword not in ds:
            return False
        value = ds[keyword].value
    except Exception:  # a value pydicom cannot even convert is present and malformed
        return True
    if value is None:
        return False
    if isinstance(value, (str, bytes)):
        return value.strip() != ("" if isinstance(value, str) else b"")
    try:
        return len(value) > 0
    except TypeError:
        return True


def _native_pixel_location(fp: Any, explicit_vr: bool) -> tuple[int | None, int | None]:
    """Offset and length of the pixel data value, with ``fp`` at the pixel data element."""
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8 or head[:4] != _PIXEL_DATA_TAG_LE:
        return None, None
    if explicit_vr:
        if len(head) < 12 or head[4:6] not in _LONG_VRS:
            return None, None
        (length,) = struct.unpack("<I", head[8:12])
        offset = start + 12
    else:
        (length,) = struct.unpack("<I", head[4:8])
        offset = start + 8
    if length == 0xFFFFFFFF:  # undefined length: encapsulated (compressed)
        return None, None
    try:  # a cut file holds fewer bytes than the element declares: report what is there
        available = os.fstat(fp.fileno()).st_size - offset
    except (OSError, AttributeError, ValueError):
        available = length
    return offset, int(max(0, min(length, available)))


def read_header(path: str | os.PathLike[str], *, force: bool = False) -> SliceHeader:
    """Read the header of one DICOM file, stopping before the pixel data.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    force : bool
        Read files that lack the ``DICM`` preamble too.

    Returns
    -------
    SliceHeader

    Raises
    ------
    DicomDecodeError
        The file is not readable DICOM (message names the file and pydicom's reason).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=force)
            ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
            if not ts and force:
                ts = "1.2.840.10008.1.2"  # raw DICOM without meta: implicit VR LE by default
            has_pixels = False
            offset = length = None
            if ts in NATIVE_LE_SYNTAXES:
                offset, length = _native_pixel_location(fp, explicit_vr=ts.endswith(".1"))
                has_pixels = offset is not None
            if not has_pixels:  # compressed or other syntaxes: an image has Rows/Columns
                has_pixels = _get(ds, "Rows") is not None and _get(ds, "Columns") is not None
            h = _summarise(path, ds, ts, has_pixels, offset, length)
            if h.frames > 1 and "PerFrameFunctionalGroupsSequence" in ds:
                h = _with_frames(h, ds)
            return h
    except (InvalidDicomError, EOFError) as exc:
        raise DicomDecodeError(f"not a readable DICOM file ({exc})", source=path) from exc
    except OSError as exc:
        raise DicomDecodeError(f"cannot read file ({exc.strerror or exc})", source=path) from exc
    except Exception as exc:  # pydicom raises many types on malformed headers
        raise DicomDecodeError(f"malformed DICOM header ({type(exc).__name__}: {exc})",
                               source=path) from exc


def _group_value(groups: Any, sequence: str, keyword: str) -> Any:
    """``groups.<sequence>[0].<keyword>`` or ``None``."""
    if groups is None or sequence not in groups:
        return None
    items = groups[sequence].value
    return _get(items[0], keyword) if items else None


def _frame_value(shared: Any, per_frame: Any, sequence: str, keyword: str) -> Any:
    value = _group_value(per_frame, sequence, keyword)
    return _group_value(shared, sequence, keyword) if value is None else value


def _with_frames(h: SliceHeader, ds: Any) -> SliceHeader:
    """Attach one header per frame of an enhanced / legacy-converted multi-frame CT.

    Position, orientation, pixel spacing, thickness and rescale come from the per-frame
    functional groups, falling back to the shared ones (DICOM PS3.3 C.7.6.16). A frame whose
    groups cannot be read leaves the object unexpanded (it is then refused as unsupported).
    """
    try:
        shared_seq = ds.get("SharedFunctionalGroupsSequence")
        shared = shared_seq[0] if shared_seq else None
        per_frame = ds.PerFrameFunctionalGroupsSequence
        if len(per_frame) != h.frames or not h.rows or not h.columns or not h.bits_allocated:
            return h
        frame_bytes = h.rows * h.columns * (h.bits_allocated // 8)
        frames = []
        for i, groups in enumerate(per_frame):

            def value(sequence: str, keyword: str, groups: Any = groups) -> Any:
                return _frame_value(shared, groups, sequence, keyword)

            def floats(sequence: str, keyword: str, n: int) -> tuple[float, ...] | None:
                v = value(sequence, keyword)
                try:
                    out = tuple(float(x) for x in v) if v is not None else None
                except (TypeError, ValueError):
                    return None
                return out if out is not None and len(out) == n and all(
                    math.isfinite(x) for x in out) else None

            def number(sequence: str, keyword: str) -> float | None:
                v = value(sequence, keyword)
                try:
                    out = float(v) if v is not None else None
                except (TypeError, ValueError):
                    return None
                return out if out is not None and math.isfinite(out) else None

            frame_offset = frame_length = None
            if h.pixel_offset is not None and h.pixel_length is not None:
                frame_offset = h.pixel_offset + i * frame_bytes
                frame_length = max(0, h.pixel_length - i * frame_bytes)
                if i < h.frames - 1:  # the last frame carries any excess, so it is caught
                    frame_length = min(frame_bytes, frame_length)
            frames.append(dataclasses.replace(
                h, frames=1, frame_index=i,
                position=floats("PlanePositionSequence", "ImagePositionPatient", 3),
                orientation=floats("PlaneOrientationSequence", "ImageOrientationPatient", 6),
                pixel_spacing=floats("PixelMeasuresSequence", "PixelSpacing", 2),
                slice_thickness_mm=number("PixelMeasuresSequence", "SliceThickness"),
                rescale_slope=number("PixelValueTransformationSequence", "RescaleSlope"),
                rescale_intercept=number("PixelValueTransformationSequence",
                                         "RescaleIntercept"),
                pixel_offset=frame_offset, pixel_length=frame_length))
    except Exception as exc:  # malformed functional groups: leave unexpanded
        logger.debug("%s: cannot read functional groups (%s)", h.path, exc)
        return h
    return dataclasses.replace(h, frame_headers=tuple(frames))


def _summarise(path: str, ds: Any, ts: str, has_pixels: bool, offset: int | None,
               length: int | None) -> SliceHeader:
    image_type = _get(ds, "ImageType")
    try:
        image_type = tuple(str(v).strip().upper() for v in image_type) if image_type else ()
    except Exception:
        image_type = ()
    if isinstance(image_type, tuple) and len(image_type) == 1 and "\\" in image_type[0]:
        image_type = tuple(v.strip() for v in image_type[0].split("\\"))
    spacing = _floats(ds, "PixelSpacing", 2)
    parsed = {"PixelSpacing": spacing, "SliceThickness": _float(ds, "SliceThickness"),
              "RescaleSlope": _float(ds, "RescaleSlope"),
              "RescaleIntercept": _float(ds, "RescaleIntercept")}
    malformed = tuple(k for k, v in parsed.items() if v is None and _has_value(ds, k))
    if spacing is not None and not all(s > 0 for s in spacing):
        spacing = None
    frames = _int(ds, "NumberOfFrames")
    contrast = None
    if "ContrastBolusAgent" in ds:
        contrast = _str(ds, "ContrastBolusAgent")
    try:
        has_lut = "ModalityLUTSequence" in ds and len(ds.ModalityLUTSequence) > 0
    except Exception:
        has_lut = False
    return SliceHeader(
        path=path,
        sop_class_uid=_str(ds, "SOPClassUID"),
        transfer_syntax=ts,
        modality=_str(ds, "Modality").upper(),
        image_type=image_type,
        series_uid=_str(ds, "SeriesInstanceUID"),
        study_uid=_str(ds, "StudyInstanceUID"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_str(ds, "SeriesDescription"),
        instance_number=_int(ds, "InstanceNumber"),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        frames=frames if frames is not None and frames > 0 else 1,
        samples_per_pixel=_int(ds, "SamplesPerPixel") or 1,
        photometric=_str(ds, "PhotometricInterpretation").upper(),
        bits_allocated=_int(ds, "BitsAllocated"),
        bits_stored=_int(ds, "BitsStored"),
        high_bit=_int(ds, "HighBit"),
        pixel_representation=_int(ds, "PixelRepresentation") or 0,
        position=_floats(ds, "ImagePositionPatient", 3),  # type: ignore[arg-type]
        orientation=_floats(ds, "ImageOrientationPatient", 6),
        pixel_spacing=spacing,  # type: ignore[arg-type]
        slice_thickness_mm=parsed["SliceThickness"],
        rescale_slope=parsed["RescaleSlope"],
        rescale_intercept=parsed["RescaleIntercept"],
        has_modality_lut=has_lut,
        padding_value=_int(ds, "PixelPaddingValue"),
        padding_range_limit=_int(ds, "PixelPaddingRangeLimit"),
        has_pixel_data=has_pixels,
        pixel_offset=offset,
        pixel_length=length,
        gantry_tilt_deg=_float(ds, "GantryDetectorTilt"),
        kernel=_str(ds, "ConvolutionKernel"),
        manufacturer=_str(ds, "Manufacturer"),
        model=_str(ds, "ManufacturerModelName"),
        kvp=_float(ds, "KVP"),
        contrast=contrast,
        patient_id=_str(ds, "PatientID"),
        patient_name=_str(ds, "PatientName"),
        study_date=_str(ds, "StudyDate"),
        study_time=_str(ds, "StudyTime"),
        accession=_str(ds, "AccessionNumber"),
        malformed=malformed,
    )
