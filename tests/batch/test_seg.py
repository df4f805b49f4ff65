"""DICOM SEG: highdicom reads it back voxel for voxel; dciodvfy reports no error."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from _dicom import write_series
from _segcheck import assert_seg_matches, dciodvfy_errors

from lesionquant.batch._seg import write_seg


def _labels_for(files) -> sitk.Image:
    img = sitk.ReadImage([str(f) for f in files])
    lab = np.zeros(sitk.GetArrayViewFromImage(img).shape, np.uint8)
    lab[:, 4:-4, 4:8] = 1
    lab[:, 4:-4, 8:-4] = 2
    lab[1:3, 5:8, 5:7] = 3
    lab[2:4, 9:11, 9:11] = 4
    out = sitk.GetImageFromArray(lab)
    out.CopyInformation(img)
    return out


def test_seg_round_trip_and_dciodvfy_on_a_written_series(tmp_path):
    info = write_series(tmp_path / "ct", patient_name="DOE^JANE", patient_id="PAT001")
    labels = _labels_for(info["files"])
    assert write_seg(labels, info["files"], tmp_path / "seg.dcm", patient_pseudonym="P-abc")
    assert dciodvfy_errors(tmp_path / "seg.dcm") == []
    assert_seg_matches(tmp_path / "seg.dcm", labels, info["files"])
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    assert ds.PatientID == "P-abc" and str(ds.PatientName) == "P-abc^"
    assert ds.PatientBirthDate == "" and ds.AccessionNumber == ""
    raw = (tmp_path / "seg.dcm").read_bytes()
    assert b"DOE^JANE" not in raw and b"PAT001" not in raw and b"ACC123" not in raw


def test_seg_keeps_identifiers_when_asked_and_skips_absent_classes(tmp_path):
    info = write_series(tmp_path / "ct")
    labels = _labels_for(info["files"])
    arr = sitk.GetArrayFromImage(labels)
    arr[arr == 4] = 2  # no consolidation: three segments, numbered 1..3
    only3 = sitk.GetImageFromArray(arr)
    only3.CopyInformation(labels)
    write_seg(only3, info["files"], tmp_path / "seg.dcm", patient_pseudonym=None)
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    assert ds.PatientID == "PAT001" and len(ds.SegmentSequence) == 3
    assert dciodvfy_errors(tmp_path / "seg.dcm") == []
    assert_seg_matches(tmp_path / "seg.dcm", only3, info["files"])


def test_empty_label_map_writes_nothing(tmp_path):
    info = write_series(tmp_path / "ct")
    empty = sitk.Image(_labels_for(info["files"]))
    empty = sitk.Multiply(empty, 0)
    assert not write_seg(empty, info["files"], tmp_path / "seg.dcm")
    assert not (tmp_path / "seg.dcm").exists()


@pytest.mark.realdata
def test_seg_of_a_real_chest_series_from_quantify(edge_dir, tmp_path):
    import lesionquant

    result = lesionquant.quantify(edge_dir / "cip-chest-ct-64-dicom-series-implicit-vr")
    files = result.scan.files
    assert len(files) == 79
    assert write_seg(result.labelmap, files, tmp_path / "seg.dcm", patient_pseudonym="P-x")
    assert dciodvfy_errors(tmp_path / "seg.dcm") == []
    assert_seg_matches(tmp_path / "seg.dcm", result.labelmap, files)


@pytest.mark.parametrize(("method", "sha", "family"), [
    ("classical", None, "Histogram Analysis"),
    ("lungs:model+lesions:classical", "ab" * 32, "Artificial Intelligence"),
])
def test_seg_names_the_algorithm_method_and_weights(tmp_path, method, sha, family):
    from lesionquant import __version__

    info = write_series(tmp_path / "ct")
    labels = _labels_for(info["files"])
    assert write_seg(labels, info["files"], tmp_path / "seg.dcm", method=method,
                     weights_sha256=sha)
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    assert len(ds.SegmentSequence) == 4
    for segment in ds.SegmentSequence:
        alg = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert alg.AlgorithmName == "lesionquant" and alg.AlgorithmVersion == __version__
        assert alg.AlgorithmFamilyCodeSequence[0].CodeMeaning == family
        params = dict(p.split("=", 1) for p in str(alg.AlgorithmParameters).split(","))
        assert params.pop("method") == method
        assert params == ({"weights_sha256": sha} if sha else {})
    assert dciodvfy_errors(tmp_path / "seg.dcm") == []
