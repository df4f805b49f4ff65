"""Multi-frame CT: the real CIP series converted to Legacy Converted Enhanced CT (highdicom)
must load exactly like the single-frame files; derived enhanced CT stays refused."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import RLELossless, generate_uid

from lesionquant import load_scan
from lesionquant.errors import DicomDecodeError, UnsupportedDicomError

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def cip(edge_dir):
    folder = edge_dir / "cip-chest-ct-64-dicom-series-implicit-vr"
    return folder, load_scan(folder)


@pytest.fixture(scope="module")
def multiframe(cip, tmp_path_factory):
    """The CIP series as one Legacy Converted Enhanced CT file, frames out of order."""
    path = tmp_path_factory.mktemp("mf") / "mf.dcm"
    _convert(cip[0], shuffle=True).save_as(path)
    return path


def _convert(folder, shuffle=False):
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    datasets = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]
    if shuffle:  # frames out of spatial order: the loader must sort them by position
        datasets = datasets[::2] + datasets[1::2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mf = LegacyConvertedEnhancedCTImage(datasets, series_instance_uid=generate_uid(),
                                            series_number=9, sop_instance_uid=generate_uid(),
                                            instance_number=1)
    return mf


def _same(a, b):
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a.image),
                                  sitk.GetArrayViewFromImage(b.image))
    np.testing.assert_allclose(a.image.GetSpacing(), b.image.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(a.image.GetOrigin(), b.image.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(a.image.GetDirection(), b.image.GetDirection(), atol=1e-9)


def test_legacy_converted_enhanced_ct_matches_single_frames(cip, multiframe):
    _, ref = cip
    path = multiframe
    scan = load_scan(path)
    _same(scan, ref)
    assert scan.files == (str(path),)
    assert scan.image.GetSize() == (64, 64, 79)


def test_compressed_multiframe_decodes_frame_by_frame(cip, multiframe, tmp_path):
    _, ref = cip
    mf = pydicom.dcmread(multiframe)
    mf.compress(RLELossless)
    path = tmp_path / "mf_rle.dcm"
    mf.save_as(path)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == RLELossless
    _same(load_scan(tmp_path), ref)


def test_truncated_multiframe_refused(multiframe, tmp_path):
    path = tmp_path / "cut.dcm"
    path.write_bytes(multiframe.read_bytes()[:-5000])
    with pytest.raises(DicomDecodeError, match=r"frame 79\]: truncated pixel data"):
        load_scan(path)


def test_derived_enhanced_perfusion_map_refused(edge_dir):
    f = edge_dir / "pydicom-enhanced-ct-multiframe" / "eCT_Supplemental.dcm"
    with pytest.raises(UnsupportedDicomError, match="derived image"):
        load_scan(f)
