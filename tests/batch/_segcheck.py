"""SEG checks shared by the batch tests: highdicom read-back and dciodvfy."""

from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from lesionquant.batch._seg import SEGMENT_CLASSES


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
