"""Fuzz the header parsing and loading: any input must load or raise a LesionQuantError.

CI runs 40 examples per property (about a second); ``bench/fuzz_loader.py`` runs the same
properties for minutes. Inputs that once crashed are kept below as regression tests.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from _dicomgen import ct_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lesionquant import load_scan
from lesionquant.errors import LesionQuantError
from lesionquant.io._header import read_header


def _seed_bytes() -> bytes:
    hu = np.full((8, 8), -1000, np.int16)
    hu[2:6, 2:6] = 40
    buf = io.BytesIO()
    ct_dataset(hu + 1024, thickness_mm=2.0).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


SEED = _seed_bytes()


def check_bytes(data: bytes, folder) -> None:
    """Write ``data`` as a file, read its header and load it: only typed errors may escape."""
    path = folder / "f.dcm"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            read_header(path, force=True)
        except LesionQuantError:
            pass
        try:
            scan = load_scan(path)
        except LesionQuantError as exc:
            assert "\n" not in str(exc)
            return
    assert scan.image.GetDimension() == 3


# Structured fuzz: header values a broken exporter could write.
_text = st.text(alphabet=st.characters(codec="ascii", exclude_characters="\x00"), max_size=24)
_number_text = st.one_of(_text, st.floats(allow_nan=True, allow_infinity=True).map(str),
                         st.integers(-10**9, 10**9).map(str))
FIELDS = {
    "Rows": st.integers(0, 70000), "Columns": st.integers(0, 70000),
    "BitsAllocated": st.sampled_from([0, 1, 8, 12, 16, 32, 64]),
    "BitsStored": st.integers(0, 40), "HighBit": st.integers(0, 40),
    "PixelRepresentation": st.integers(0, 3), "SamplesPerPixel": st.integers(0, 4),
    "NumberOfFrames": _number_text,
    "RescaleSlope": _number_text, "RescaleIntercept": _number_text,
    "SliceThickness": _number_text,
    "PixelSpacing": st.lists(_number_text, min_size=0, max_size=4),
    "ImagePositionPatient": st.lists(_number_text, min_size=0, max_size=4),
    "ImageOrientationPatient": st.lists(_number_text, min_size=0, max_size=7),
    "ImageType": st.lists(_text, max_size=4), "Modality": _text,
    "PixelPaddingValue": st.integers(0, 65535),
}


def _structured(data: dict) -> bytes:
    ds = ct_dataset(np.full((8, 8), 24, np.int16) + np.arange(8, dtype=np.int16))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on each invalid value we write
        for key, value in data.items():
            try:
                setattr(ds, key, value)
            except Exception:  # pydicom refuses some values at assignment: skip those
                continue
        try:
            ds.save_as(buf, enforce_file_format=True)
        except Exception:
            return SEED
    return buf.getvalue()


def structured_header_property(tmp_path, data: dict) -> None:
    check_bytes(_structured(data), tmp_path)


def mutated_bytes_property(tmp_path, cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(SEED[: max(0, cut)] if cut < len(SEED) else SEED)
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    check_bytes(bytes(data), tmp_path)


def series_geometry_property(folder, positions: list, orientation: list,
                             spacing: list) -> None:
    """A 3-slice series with arbitrary positions / orientation / spacing."""
    for f in folder.glob("s*.dcm"):
        f.unlink()
    hu = np.full((8, 8), -1000, np.int16)
    hu[2:6, 2:6] = 40
    for k, pos in enumerate(positions):
        ds = ct_dataset(hu + 1024, position=pos, orientation=orientation, spacing_mm=spacing,
                        series_uid="1.2.3.4", instance=k + 1)
        ds.save_as(folder / f"s{k}.dcm", enforce_file_format=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            scan = load_scan(folder)
        except LesionQuantError as exc:
            assert "\n" not in str(exc)
            return
    assert scan.image.GetDimension() == 3


_coord = st.floats(-1e4, 1e4, allow_nan=False)
_cos = st.floats(-1.0, 1.0, allow_nan=False)
GEOMETRY = {
    "positions": st.lists(st.lists(_coord, min_size=3, max_size=3), min_size=1, max_size=4),
    "orientation": st.one_of(
        st.sampled_from([[1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, -1], [0, 1, 0, 0, 0, -1]]),
        st.lists(_cos, min_size=6, max_size=6)),
    "spacing": st.lists(st.floats(1e-3, 50.0), min_size=2, max_size=2),
}


FUZZ_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                         suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ_SETTINGS
@given(data=st.fixed_dictionaries({}, optional=FIELDS))
def test_fuzz_structured_headers(tmp_path, data):
    structured_header_property(tmp_path, data)


@FUZZ_SETTINGS
@given(cut=st.integers(0, len(SEED) + 10),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8))
def test_fuzz_mutated_bytes(tmp_path, cut, flips):
    mutated_bytes_property(tmp_path, cut, flips)


@FUZZ_SETTINGS
@given(**GEOMETRY)
def test_fuzz_series_geometry(tmp_path, positions, orientation, spacing):
    series_geometry_property(tmp_path, positions, orientation, spacing)


# Regression inputs found by bench/fuzz_loader.py (each once raised an untyped exception).
REGRESSIONS: list[dict] = [
    {"RescaleIntercept": "2147483648"},  # OverflowError in int32 rescale
    {"RescaleSlope": "2147483648"},  # OverflowError in int32 rescale
]


@pytest.mark.parametrize("data", REGRESSIONS)
def test_fuzz_regressions(tmp_path, data):
    structured_header_property(tmp_path, data)
