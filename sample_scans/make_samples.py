"""Generate the shipped sample scans (sample_scans/) deterministically.

Five small synthetic chest CTs written as DICOM series (JPEG 2000 lossless, which the
loader reads) with their truth label maps (``labels.nii.gz``: 0 background, 1 right lung,
2 left lung, 3 GGO, 4 consolidation, 5 airway) and ``manifest.json`` with the true
volumes. One fake patient (``SYNTH-0004``) has two visits 28 days apart with a resolving
pneumonia (same anatomy, same lesions shrunk in place), for the longitudinal endpoint.

Run from the repository root:  ``python sample_scans/make_samples.py``  (about 15 s).
The same code and versions give byte-identical files (UIDs derived from the case name).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from lesionquant import __version__
from lesionquant.synth import make_phantom, write_dicom_series, write_labels_nifti

HERE = Path(__file__).resolve().parent
# 192 x 192 at 1.87 mm (358 mm field of view), 5 mm slices over 300 mm: ~1 MB per case
GRID = dict(size_xyz=(192, 192, 60), spacing_mm=(1.8667, 1.8667, 5.0))

CASES = [
    dict(case="healthy", patient_id="SYNTH-0001", patient_name="SYNTH^HEALTHY",
         visit="baseline", day=0, study_date="20200401", seed=101, patient_scale=1.0,
         lesion_burden_pct=0.0, ggo_fraction=0.7),
    dict(case="mild_ggo", patient_id="SYNTH-0002", patient_name="SYNTH^MILD",
         visit="baseline", day=0, study_date="20200405", seed=102, patient_scale=0.92,
         lesion_burden_pct=4.0, ggo_fraction=0.95),
    dict(case="severe_mixed", patient_id="SYNTH-0003", patient_name="SYNTH^SEVERE",
         visit="baseline", day=0, study_date="20200410", seed=103, patient_scale=1.08,
         lesion_burden_pct=35.0, ggo_fraction=0.55, crazy_paving=True),
    dict(case="patient4_day00", patient_id="SYNTH-0004", patient_name="SYNTH^FOLLOWUP",
         visit="baseline", day=0, study_date="20200402", seed=104, patient_scale=0.97,
         lesion_burden_pct=18.0, ggo_fraction=0.65, lesion_pattern_pct=18.0),
    dict(case="patient4_day28", patient_id="SYNTH-0004", patient_name="SYNTH^FOLLOWUP",
         visit="day28", day=28, study_date="20200430", seed=104, patient_scale=0.97,
         lesion_burden_pct=7.0, ggo_fraction=0.85, lesion_pattern_pct=18.0),
]


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def main() -> int:
    manifest = dict(
        description="Synthetic chest CTs with exact truth, made by lesionquant.synth. Not "
                    "patients. Volumes in mL; lesion_pct = 100 * lesion_ml / lung_ml.",
        generator="sample_scans/make_samples.py",
        lesionquant_version=__version__,
        label_map="0 background, 1 right lung, 2 left lung, 3 GGO, 4 consolidation, 5 airway",
        cases=[],
    )
    for spec in CASES:
        spec = dict(spec)
        case = spec.pop("case")
        pid, pname = spec.pop("patient_id"), spec.pop("patient_name")
        visit, day, date = spec.pop("visit"), spec.pop("day"), spec.pop("study_date")
        ph = make_phantom(**GRID, **spec)
        folder = HERE / case
        if folder.exists():
            shutil.rmtree(folder)
        dicom = folder / "dicom"
        files = write_dicom_series(
            ph.image, dicom, patient_name=pname, patient_id=pid, study_date=date,
            study_time="093000", accession_number=f"SYN{pid[-4:]}{day:02d}",
            series_description=f"SYNTHETIC CHEST 5mm {case}", compress="jpeg2000",
            uid_seed=f"lesionquant-sample-{case}",
        )
        write_labels_nifti(ph.labels, folder / "labels.nii.gz")
        digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
        manifest["cases"].append(dict(
            case=case, dicom=f"{case}/dicom", labels=f"{case}/labels.nii.gz",
            patient_id=pid, patient_name=pname, visit=visit, day=day, study_date=date,
            n_slices=len(files), size_xyz=list(GRID["size_xyz"]),
            spacing_mm=list(GRID["spacing_mm"]), **{k: round(v, 4) for k, v in ph.truth().items()},
            noise_hu=round(ph.noise_hu, 3), params=ph.params, dicom_sha256=digest,
            bytes=_folder_bytes(folder),
        ))
        print(f"{case}: lung {ph.lung_ml:.0f} mL, lesion {ph.lesion_pct:.2f} %, "
              f"{_folder_bytes(folder) / 1e6:.2f} MB")
    tmp = HERE / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, HERE / "manifest.json")
    print(f"total {_folder_bytes(HERE) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
