"""Benchmark: lesionquant.load_scan vs a bare SimpleITK ImageSeriesReader on the same files.

Cases: the largest real CT series under the data root (by voxel count, uncompressed and
JPEG 2000) and a 512 x 512 x 300 int16 series this script writes itself to a temp folder.
Each measurement runs in a fresh subprocess (so memory is not shared between readers): the
wall time of the load (best of ``--repeat``) and the peak RSS increase during it (VmHWM after
minus VmRSS before, from /proc/self/status) compared with the volume's size in memory.

Usage::

    python bench/bench_load.py [--data ../shared/data] [--repeat 3] [--slices 300]

Targets (issue 9): time within 1.5x of SimpleITK, peak memory within 1.5x of the volume size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_CHILD = r"""
import json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
import numpy as np, SimpleITK as sitk
import lesionquant.io, lesionquant.io._dicom, pydicom, pydicom.pixels  # imports before measuring
how, files, folder = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
def run():
    if how == "sitk":
        r = sitk.ImageSeriesReader()
        r.SetFileNames(files)
        return r.Execute()
    return lesionquant.io.load_scan(folder).image
rss0 = status("VmRSS:")
t0 = time.perf_counter()
img = run()
dt = time.perf_counter() - t0
peak = status("VmHWM:") - rss0
nbytes = img.GetNumberOfPixels() * img.GetSizeOfPixelComponent()
print(json.dumps({"seconds": dt, "peak_bytes": peak, "volume_bytes": nbytes,
                  "size": img.GetSize()}))
"""


def _measure(how: str, files: list[str], folder: str, repeat: int) -> dict:
    best: dict | None = None
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", _CHILD, how, json.dumps(files), folder],
                             capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        if best is None or res["seconds"] < best["seconds"]:
            best = {**res, "peak_bytes": max(res["peak_bytes"], (best or res)["peak_bytes"])}
    return best  # type: ignore[return-value]


def _largest_series(data: Path) -> list[tuple[str, list[str], str]]:
    """(label, files in slice order, folder) of the largest uncompressed / compressed series."""
    from lesionquant.io import discover_series

    found = []
    for folder in sorted(p for p in (data / "dicom-edge").iterdir() if p.is_dir()):
        for s in discover_series(folder).series:
            if s.chosen and s.n_files > 1:
                voxels = s.n_files * (s.first.rows or 0) * (s.first.columns or 0)
                native = s.first.is_native_le
                found.append((voxels, native, folder, s))
    out = []
    for native in (True, False):
        cands = sorted((c for c in found if c[1] is native), key=lambda c: -c[0])
        if cands:
            _, _, folder, s = cands[0]
            from lesionquant.io._geometry import plan_stack

            plan = plan_stack(s.headers, str(folder))
            files = [s.headers[i].path for i in plan.order]
            # SimpleITK reads the same files; load_scan gets the series' own folder.
            series_dir = os.path.commonpath(files)
            label = f"{folder.name} ({'uncompressed' if native else 'JPEG 2000'})"
            out.append((label, files, series_dir))
    return out


def _write_synthetic(folder: Path, n_slices: int) -> list[str]:
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:512, :512]
    body = ((yy - 256) / 200.0) ** 2 + ((xx - 256) / 240.0) ** 2 < 1
    series, study = generate_uid(), generate_uid()
    paths = []
    for k in range(n_slices):
        hu = np.where(body, 40, -1000) + rng.integers(-20, 20, (512, 512))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.ImageType = "CT", ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-250, -250, k * 1.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.98, 0.98], 1.0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = (hu + 1024).astype("<i2").tobytes()
        path = folder / f"IM{k:04d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(str(path))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args(argv)
    cases = _largest_series(args.data) if args.data.is_dir() else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="lq-bench-") as tmp:
        files = _write_synthetic(Path(tmp), args.slices)
        cases.append((f"synthetic 512x512x{args.slices} (uncompressed)", files, tmp))
        for label, files, folder in cases:
            for how in ("sitk", "lesionquant"):
                subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)  # cache
                rows.append((label, how, _measure(how, files, folder, args.repeat)))
    print("| series | reader | size | time s | time vs sitk | peak MB | volume MB | peak/volume |")
    print("|---|---|---|---|---|---|---|---|")
    base: dict[str, float] = {}
    for label, how, r in rows:
        base.setdefault(label, r["seconds"])
        mb = 1024 * 1024
        print(f"| {label} | {how} | {'x'.join(map(str, r['size']))} | {r['seconds']:.3f} | "
              f"{r['seconds'] / base[label]:.2f} | {r['peak_bytes'] / mb:.0f} | "
              f"{r['volume_bytes'] / mb:.0f} | {r['peak_bytes'] / r['volume_bytes']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
