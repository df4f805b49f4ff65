"""DICOM SEG: highdicom reads it back voxel for voxel; dciodvfy reports no error."""

from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from _dicom import write_series

from lesionquant.batch._seg import SEGMENT_CLASSES, write_seg


def dciodvfy_errors(path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def assert_seg_matches(seg_path, labelmap: sitk.Image, source_files) -> None:
    """Every SEG frame equals the label map at the same physical position."""
    seg = hd.seg.segread(seg_path)
    expected = sitk.GetArrayFromImage(labelmap)
    names = {d.SegmentNumber: d.SegmentLabel for d in seg.SegmentSequence}
    value_of = {label: value for value, (label, _, _) in SEGMENT_CLASSES.items()}
    present = sorted(int(v) for v in np.unique(expected) if v)
    assert [value_of[names[n]] for n in sorted(names)] == present
    vol = seg.get_volume(combine_segments=True)
    got = np.zeros_like(vol.array)
    for number, label in names.items():
        got[vol.array == number] = value_of[label]
    affine = vol.affine
    assert np.allclose(affine[:3, 2], np.asarray(labelmap.GetDirection()).reshape(3, 3)[:, 0]
                       * labelmap.GetSpacing()[0])  # columns run along x
    for k in range(got.shape[0]):
        z = labelmap.TransformPhysicalPointToIndex(tuple(affine[:3] @ [k, 0, 0, 1]))[2]
        assert np.array_equal(got[k], expected[z]), f"frame {k} differs from slice {z}"
    # the referenced series is the source
    src = pydicom.dcmread(source_files[0], stop_before_pixels=True)
    assert seg.StudyInstanceUID == src.StudyInstanceUID
    assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == src.SeriesInstanceUID
    assert len(ref.ReferencedInstanceSequence) == len(source_files)


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
