"""INPUT expansion: every loadable CT series is one job, stable ids, clear input errors."""

from __future__ import annotations

import pydicom
import SimpleITK as sitk
from _dicom import write_series

from lesionquant.batch._jobs import expand_inputs


def test_folder_of_many_scans_gives_one_job_per_ct_series(tmp_path):
    a = write_series(tmp_path / "site1" / "pat1" / "visit1")
    b = write_series(tmp_path / "site1" / "pat1" / "visit2", study_date="20200329")
    loc = write_series(tmp_path / "site1" / "pat1" / "scout", slices=2)
    for f in loc["files"]:  # a localizer series: not a job
        ds = pydicom.dcmread(f)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.save_as(f)
    (tmp_path / "site1" / "notes.txt").write_text("not DICOM")
    vol = tmp_path / "site2" / "ct.nii.gz"
    vol.parent.mkdir()
    (tmp_path / "site2" / "empty").mkdir()
    (tmp_path / "site2" / "empty" / "readme.txt").write_text("no images here")
    sitk.WriteImage(sitk.ReadImage(a["files"]), str(vol))
    jobs, errors = expand_inputs([tmp_path / "site1", vol, tmp_path / "site1" / "pat1",
                                  tmp_path / "nothere", tmp_path / "site2" / "empty"], "s")
    assert errors and len(errors) == 2
    assert {e.source for e in errors} == {str(tmp_path / "nothere"),
                                         str(tmp_path / "site2" / "empty")}
    assert all(e.error_id.startswith("IN-") and "\n" not in e.reason for e in errors)
    reason = {e.source: e.reason for e in errors}
    assert "no such file or folder" in reason[str(tmp_path / "nothere")]
    assert "no DICOM image series" in reason[str(tmp_path / "site2" / "empty")]
    assert len(jobs) == 3  # the re-listed pat1 folder adds nothing
    by_uid = {j.series_uid: j for j in jobs}
    assert set(by_uid) == {a["series_uid"], b["series_uid"], None}
    assert by_uid[a["series_uid"]].source == str(tmp_path / "site1" / "pat1" / "visit1")
    assert by_uid[None].source == str(vol)
    assert len({j.scan_id for j in jobs}) == 3
    again, _ = expand_inputs([tmp_path / "site1", vol], "s")
    assert {j.scan_id for j in again} == {j.scan_id for j in jobs}  # stable per salt
    other, _ = expand_inputs([tmp_path / "site1", vol], "another salt")
    assert not {j.scan_id for j in other} & {j.scan_id for j in jobs}
