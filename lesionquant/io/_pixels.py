"""DICOM pixels to Hounsfield units, safely.

Order of operations for every slice:

1. **Size check before decoding**: the declared size (Rows x Columns x frames x bytes) is
   compared with a hard cap and, for uncompressed data, with the real pixel data length, so a
   small file declaring 60000 x 60000 pixels is refused before anything is allocated.
2. **Stored values**: uncompressed little-endian slices are read straight from the file into
   a reusable buffer; compressed / big-endian slices are decoded by pydicom (pylibjpeg
   plugins). Unused high bits are masked and signed values sign-extended from BitsStored.
3. **Modality transform**: RescaleSlope/RescaleIntercept, or the Modality LUT Sequence.
4. **Padding to air**: stored values equal to PixelPaddingValue (or within the
   PixelPaddingRangeLimit range) and any value below :data:`OUT_OF_FIELD_HU` become
   :data:`AIR_HU` (-1024), so out-of-field markers (-2048, -3024, -1500) never reach the
   lungs' density statistics.

:func:`check_looks_like_hu` then checks the whole volume looks like calibrated CT.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np

from lesionquant.errors import (
    DicomDecodeError,
    ImplausibleValueError,
    NotCTError,
    UnsupportedDicomError,
)
from lesionquant.io._header import SliceHeader

__all__ = [
    "AIR_HU",
    "MAX_PIXELS_PER_FRAME",
    "MAX_VOLUME_VOXELS",
    "OUT_OF_FIELD_HU",
    "RESCALE_INTERCEPT_RANGE",
    "RESCALE_SLOPE_RANGE",
    "SliceDecoder",
    "check_declared_size",
    "check_looks_like_hu",
    "hu_dtype",
    "new_volume",
    "replace_out_of_field",
]

logger = logging.getLogger(__name__)

_NATIVE_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                    "1.2.840.10008.1.2.1.99")

AIR_HU = -1024
"""HU written where the scanner marked padding / out-of-field pixels."""
OUT_OF_FIELD_HU = -1200.0
"""Values below this (HU) cannot be tissue or air in calibrated CT; they are padding."""
MAX_PIXELS_PER_FRAME = 8192 * 8192
"""Refuse frames larger than this (Rows x Columns) before decoding."""
MAX_VOLUME_VOXELS = 2**31
"""Refuse series whose assembled volume would exceed this many voxels (4 GiB as int16)."""
RESCALE_SLOPE_RANGE = (1e-3, 10.0)
"""Plausible RescaleSlope of CT (HU per stored unit): 1 on nearly every scanner, 0.5-2 on a
few; a slope beyond 10 would give 16-bit data a range of +-300000 HU."""
RESCALE_INTERCEPT_RANGE = (-40000.0, 40000.0)
"""Plausible RescaleIntercept of CT, HU: -1024, -1000, -3024, -8192 and -32768 (unsigned
16-bit data shifted by half its range) are seen; beyond +-40000 no stored value maps to
the -1024..3071 HU of CT."""


def new_volume(shape_zyx: tuple[int, int, int], dtype: np.dtype):
    """A SimpleITK image and a writable numpy view of its buffer, ``(z, y, x)``.

    Slices are decoded straight into the image's own memory, so the assembled volume is never
    copied (``sitk.GetImageFromArray`` would double the peak memory). SimpleITK only exposes a
    read-only view; the writable view is made over the same address with ctypes. The view is
    valid only while ``image`` is alive: callers keep both together and drop the view first.

    Returns
    -------
    image : SimpleITK.Image
    array : ndarray
        Writable view of ``image``'s voxels.
    """
    import ctypes

    import SimpleITK as sitk

    pixel_id = {np.dtype(np.int16): sitk.sitkInt16, np.dtype(np.float32): sitk.sitkFloat32}
    nz, ny, nx = (int(v) for v in shape_zyx)
    image = sitk.Image(nx, ny, nz, pixel_id[np.dtype(dtype)])
    view = sitk.GetArrayViewFromImage(image)
    address = view.__array_interface__["data"][0]
    raw = (ctypes.c_char * view.nbytes).from_address(address)
    array = np.frombuffer(raw, dtype=dtype).reshape(view.shape)
    return image, array


def check_declared_size(h: SliceHeader) -> int:
    """Check a header's declared pixel size against the cap and the real data length.

    Parameters
    ----------
    h : SliceHeader

    Returns
    -------
    int
        Declared number of bytes of pixel data.

    Raises
    ------
    DicomDecodeError
        Missing/invalid image attributes, a size above :data:`MAX_PIXELS_PER_FRAME`, or
        uncompressed pixel data shorter than declared (truncated file).
    UnsupportedDicomError
        Colour images or bit depths other than 8/16/32 bits.
    ImplausibleValueError
        PixelSpacing, SliceThickness, RescaleSlope or RescaleIntercept present but not a
        finite number, or the rescale outside :data:`RESCALE_SLOPE_RANGE` /
        :data:`RESCALE_INTERCEPT_RANGE`.
    """
    if h.malformed:
        raise ImplausibleValueError(f"{', '.join(h.malformed)} present but not valid numbers "
                                    "(text, NaN, inf or a wrong count); refused rather than "
                                    "guessed", source=h.label)
    if not h.rows or not h.columns or h.rows < 1 or h.columns < 1:
        raise DicomDecodeError("missing or invalid Rows/Columns", source=h.label)
    if h.rows * h.columns > MAX_PIXELS_PER_FRAME:
        raise DicomDecodeError(
            f"declared image size {h.columns} x {h.rows} exceeds the limit of "
            f"{MAX_PIXELS_PER_FRAME} pixels per frame; refused before decoding", source=h.label)
    if h.samples_per_pixel != 1:
        raise UnsupportedDicomError(
            f"colour image (SamplesPerPixel {h.samples_per_pixel}); CT must be grayscale",
            source=h.label)
    if h.bits_allocated not in (8, 16, 32):
        raise UnsupportedDicomError(f"unsupported BitsAllocated {h.bits_allocated}",
                                    source=h.label)
    bits_stored = h.bits_stored or h.bits_allocated
    if not 1 <= bits_stored <= h.bits_allocated:
        raise DicomDecodeError(f"invalid BitsStored {h.bits_stored} for BitsAllocated "
                               f"{h.bits_allocated}", source=h.label)
    slope, icpt = h.rescale_slope, h.rescale_intercept
    for name, value, (lo, hi) in (("RescaleSlope", slope, RESCALE_SLOPE_RANGE),
                                  ("RescaleIntercept", icpt, RESCALE_INTERCEPT_RANGE)):
        if value is not None and not lo <= value <= hi:
            raise ImplausibleValueError(f"{name} {value:g} outside the plausible range "
                                        f"{lo:g} to {hi:g} for CT", source=h.label)
    declared = h.rows * h.columns * h.frames * (h.bits_allocated // 8)
    if h.rows * h.columns * h.frames > MAX_VOLUME_VOXELS:
        raise DicomDecodeError(f"declared {h.frames} frames of {h.columns} x {h.rows} exceed "
                               "the size limit; refused before decoding", source=h.label)
    check_pixel_length(h, h.pixel_length, declared)
    return declared


def check_pixel_length(h: SliceHeader, length: int | None, declared: int) -> None:
    """Uncompressed pixel data must be exactly the declared size (+1 byte of odd padding).

    Shorter is a cut file; longer means Rows, Columns, frames or BitsAllocated are wrong (a
    192 x 192 slice declared 96 columns wide read as two half images: lung 1994 mL, not 3091).

    Raises
    ------
    DicomDecodeError
    """
    if length is None:
        return
    what = (f"header declares {h.columns} x {h.rows} x {h.frames} x {h.bits_allocated} bits "
            f"= {declared} bytes")
    if length < declared:
        raise DicomDecodeError(f"truncated pixel data: {length} bytes present, {what}",
                               source=h.label)
    if length > declared + (declared % 2):
        raise DicomDecodeError(f"pixel data longer than declared: {length} bytes present, "
                               f"{what}; Rows/Columns/BitsAllocated do not describe the data",
                               source=h.label)


def hu_dtype(headers: Sequence[SliceHeader]) -> np.dtype:
    """``int16`` when every slice's rescale gives integer HU, else ``float32``."""
    for h in headers:
        if h.has_modality_lut:
            continue  # LUT outputs are integers
        slope = 1.0 if h.rescale_slope is None else h.rescale_slope
        icpt = 0.0 if h.rescale_intercept is None else h.rescale_intercept
        if not (float(slope).is_integer() and float(icpt).is_integer()):
            return np.dtype(np.float32)
    return np.dtype(np.int16)


def _mask_bits(raw: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Mask unused high bits and sign-extend from ``bits_stored`` (returns int32)."""
    nbits = raw.dtype.itemsize * 8
    unsigned = raw.view(f"<u{raw.dtype.itemsize}") if raw.dtype.kind == "i" else raw
    value = unsigned.astype(np.int64 if nbits == 32 else np.int32)
    if bits_stored < nbits:
        value &= (1 << bits_stored) - 1
    if signed:
        sign = 1 << (bits_stored - 1)
        value ^= sign
        value -= sign
    return value


def _padding_mask(stored: np.ndarray, h: SliceHeader) -> np.ndarray | None:
    pv = h.padding_value
    if pv is None:
        return None
    bits = h.bits_allocated or 16
    signed = h.pixel_representation == 1
    limit = h.padding_range_limit

    def fix(v: int) -> int:  # US/SS ambiguity of (0028,0120)
        if signed and v >= 1 << (bits - 1):
            return v - (1 << bits)
        return v

    pv = fix(pv)
    if limit is None:
        return stored == pv
    limit = fix(limit)
    lo, hi = min(pv, limit), max(pv, limit)
    return (stored >= lo) & (stored <= hi)


def replace_out_of_field(hu: np.ndarray) -> int:
    """Set every value below :data:`OUT_OF_FIELD_HU` to :data:`AIR_HU`, in place.

    Returns
    -------
    int
        Number of voxels replaced.
    """
    low = hu < OUT_OF_FIELD_HU
    count = int(np.count_nonzero(low))
    if count:
        hu[low] = AIR_HU
    return count


class SliceDecoder:
    """Decode slices of one series into HU, reusing buffers between slices.

    Parameters
    ----------
    dtype : numpy.dtype
        Output dtype (from :func:`hu_dtype`).
    """

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self._buffers: dict[tuple[int, str], np.ndarray] = {}

    def stored(self, h: SliceHeader) -> np.ndarray:
        """Stored pixel values of a single-frame slice, ``(rows, columns)``, masked."""
        check_declared_size(h)
        if h.frames != 1:
            raise UnsupportedDicomError(f"multi-frame object ({h.frames} frames)", source=h.label)
        bits_stored = h.bits_stored or h.bits_allocated or 16
        signed = h.pixel_representation == 1
        if h.is_native_le and h.bits_allocated in (8, 16, 32):
            dt = f"<{'i' if signed else 'u'}{h.bits_allocated // 8}"
            key = (h.rows * h.columns, dt)
            buf = self._buffers.get(key)
            if buf is None:
                buf = self._buffers[key] = np.empty(h.rows * h.columns, dtype=dt)
            try:
                with open(h.path, "rb") as fp:
                    fp.seek(h.pixel_offset)  # type: ignore[arg-type]
                    got = fp.readinto(memoryview(buf).cast("B"))
            except OSError as exc:
                raise DicomDecodeError(f"cannot read pixel data ({exc})", source=h.label) from exc
            if got != buf.nbytes:
                raise DicomDecodeError(f"truncated pixel data: {got} of {buf.nbytes} bytes",
                                       source=h.label)
            return _mask_bits(buf, bits_stored, signed).reshape(h.rows, h.columns)
        return self._decode_with_pydicom(h, bits_stored, signed)

    def _decode_with_pydicom(self, h: SliceHeader, bits_stored: int, signed: bool) -> np.ndarray:
        import pydicom

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if h.frame_index is None:
                    ds = pydicom.dcmread(h.path)
                    if h.transfer_syntax in _NATIVE_SYNTAXES and "PixelData" in ds:
                        declared = h.rows * h.columns * (h.bits_allocated // 8)
                        check_pixel_length(h, len(ds.PixelData), declared)
                    arr = ds.pixel_array
                else:  # one frame of a multi-frame object, without decoding the others
                    from pydicom.pixels import pixel_array

                    arr = pixel_array(h.path, index=h.frame_index)
        except DicomDecodeError:
            raise
        except Exception as exc:  # decoder plugins raise many types
            raise DicomDecodeError(f"cannot decode pixel data ({type(exc).__name__}: {exc})",
                                   source=h.label) from exc
        if arr.shape != (h.rows, h.columns):
            raise DicomDecodeError(f"decoded pixel array has shape {arr.shape}, header declares "
                                   f"{h.rows} x {h.columns}", source=h.label)
        if arr.dtype.kind not in "iu":
            raise UnsupportedDicomError(f"non-integer pixel data ({arr.dtype})", source=h.label)
        if h.transfer_syntax in _NATIVE_SYNTAXES:
            # Native data: pydicom masks already; masking again is idempotent and cheap.
            return _mask_bits(arr, bits_stored, signed)
        # Compressed: the codec's own precision is authoritative (pydicom issue #693).
        return arr.astype(np.int64 if arr.dtype.itemsize == 4 else np.int32)

    def to_hu(self, h: SliceHeader, out: np.ndarray) -> int:
        """Decode one slice into ``out`` (``(rows, columns)``) as HU; returns padded count."""
        stored = self.stored(h)
        pad = _padding_mask(stored, h)
        if h.has_modality_lut:
            hu = self._modality_lut(h, stored)
        else:
            slope = 1.0 if h.rescale_slope is None else h.rescale_slope
            icpt = 0.0 if h.rescale_intercept is None else h.rescale_intercept
            if self.dtype.kind == "i" and float(slope) == 1.0:
                hu = stored
                hu += int(icpt)
            elif self.dtype.kind == "i":
                hu = stored * int(slope) + int(icpt)
            else:
                hu = stored.astype(np.float32) * np.float32(slope) + np.float32(icpt)
        if pad is not None:
            hu[pad] = AIR_HU
        np.clip(hu, -32768, 32767, out=hu)
        out[...] = hu
        return replace_out_of_field(out) + (0 if pad is None else int(np.count_nonzero(pad)))

    @staticmethod
    def _modality_lut(h: SliceHeader, stored: np.ndarray) -> np.ndarray:
        import pydicom
        from pydicom.pixels import apply_modality_lut

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(h.path, stop_before_pixels=True)
                return np.asarray(apply_modality_lut(stored, ds)).astype(np.float64)
        except Exception as exc:
            raise DicomDecodeError(f"invalid Modality LUT Sequence ({exc})",
                                   source=h.label) from exc


def check_looks_like_hu(hu: np.ndarray, source: str) -> list[str]:
    """Refuse data that is not calibrated CT; warn when calibration cannot be confirmed.

    Calibrated CT always holds negative HU (air at about -1000, lung, fat). Data whose values
    are all above -200 (raw detector values, perfusion maps, masks, MR) is refused; data above
    the physical range of CT is refused. A missing air peak near -1000 HU is a warning (small
    crops inside the body have none).

    Parameters
    ----------
    hu : ndarray
        Voxel values, any shape.
    source : str
        Named in messages.

    Returns
    -------
    list of str
        Warnings.

    Raises
    ------
    NotCTError
    """
    if hu.size == 0:
        raise NotCTError("empty image", source=source)
    # A strided sample of at most ~1M voxels bounds time and memory on large volumes (the
    # statistics are robust); integer data use a histogram instead of sorting.
    flat = hu.reshape(-1)
    sample = flat[:: max(1, flat.size // 500_000)]
    if sample.dtype.kind == "f" and not np.all(np.isfinite(sample)):
        raise NotCTError("image holds NaN or infinite values; not calibrated CT", source=source)
    p1, p50, p99 = _percentiles(sample, (1, 50, 99))
    negative = np.count_nonzero(sample < -200) / sample.size
    if negative < 1e-3:
        raise NotCTError(
            f"values do not look like Hounsfield units (1st/50th/99th percentile {p1:.0f}/"
            f"{p50:.0f}/{p99:.0f}, no air or lung below -200 HU); not calibrated CT",
            source=source)
    if p99 > 4000.0 or p50 > 2000.0:
        raise NotCTError(f"values too high for CT in HU (median {p50:.0f}, 99th percentile "
                         f"{p99:.0f}); not calibrated CT", source=source)
    warns = []
    air = np.count_nonzero((sample >= -1100) & (sample <= -900)) / sample.size
    if air < 1e-3:
        warns.append(f"{source}: no air peak near -1000 HU ({100 * air:.2f} % of voxels in "
                     "-1100..-900 HU); HU calibration could not be confirmed")
    return warns


def _percentiles(sample: np.ndarray, q: tuple[float, ...]) -> list[float]:
    """Percentiles (nearest rank for integers, via a histogram: no sort, no float copy)."""
    lo, hi = (int(v) for v in (sample.min(), sample.max())) if sample.dtype.kind != "f" else (0, 0)
    if sample.dtype.kind == "f" or hi - lo > 1 << 17:  # wide range: a histogram would be huge
        return [float(v) for v in np.percentile(sample, q)]
    counts = np.bincount(sample.astype(np.int64) - lo)
    cdf = np.cumsum(counts)
    ranks = [min(sample.size - 1, round(v / 100.0 * (sample.size - 1))) for v in q]
    return [float(lo + int(np.searchsorted(cdf, r + 1))) for r in ranks]
