"""Training data for the learned model: MedSeg expert slices, synthetic slices, folds.

Everything is 2D axial slices, upright (anterior up, patient's right on the image's left),
at the network's in-plane spacing :data:`lesionquant.segment.model.SPACING_MM`:

* ``hu``: float32 HU;
* ``lung``: uint8 0 background, 1 right lung, 2 left lung, 255 unknown (MedSeg: no lung
  labels);
* ``lesion``: uint8 0 none, 1 GGO, 2 consolidation.

Sources
-------
MedSeg (``../shared/data/chest/medseg-covid-2d-ggo-consolidation``): 65 expert slices,
8-bit JPEG mapped to HU by each slice's own lung and soft-tissue peaks
(:func:`lesionquant._jpeg_hu.jpeg_to_hu`, as ``lesionquant evaluate`` does; 0.7 mm pixels
assumed); the mapping is augmented in training (level +-100 HU, width +-20 %).
Synthetic, two generations, cached as ``.npz`` under ``models/cache/``:

* v1 (:func:`build_synthetic`): phantoms of :func:`lesionquant.synth.make_phantom`
  (seeds from 1000, never the evaluation seeds 0-2) and v1 lesions inserted with
  :func:`lesionquant.synth.insert_lesions` (seeds from 1000) into two real hosts;
* v2 (:func:`build_synthetic_v2`, ``models/cache/v2/``): the ground-truth v2 lesion model
  (faint coreless GGO, bands, solid and dependent-lobe consolidation, effusion) of the
  **tuning** family only (:func:`lesionquant.synth.family_cases`; the report and shifted
  families stay unseen), as phantoms and inserted into the same two hosts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lesionquant.evaluate import MEDSEG_SPACING_MM
from lesionquant.segment.model import SPACING_MM

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
#: The real data (``$LESIONQUANT_DATA`` or ``../shared/data`` beside the repository).
DATA = Path(os.environ.get("LESIONQUANT_DATA") or REPO.parent / "shared" / "data") / "chest"
if not DATA.is_dir() and Path("/work/shared/data/chest").is_dir():  # git worktrees
    DATA = Path("/work/shared/data/chest")
MEDSEG = DATA / "medseg-covid-2d-ggo-consolidation"
UNLABELLED = DATA / "covid-ct-seg-unlabeled-slices"
CACHE = REPO / "models" / "cache"
#: Assumed MedSeg pixel size, mm.
MEDSEG_MM = MEDSEG_SPACING_MM
UNKNOWN = 255

#: Real hosts lesions are inserted into for training (the other real chest CTs, the
#: healthy control A048383 included, are never seen in training).
TRAIN_HOSTS = ("lungmask-chest-ct-dicom-slice/0.dcm", "cip-copd-chest-ct-crop-2slices/ct.nii.gz")


@dataclass(frozen=True)
class Slice:
    """One training slice at its own pixel size ``mm`` (resampled on the fly)."""

    name: str
    hu: np.ndarray
    lung: np.ndarray
    lesion: np.ndarray
    mm: float
    kind: str  # "medseg" | "synth" | "unlabelled" (pseudo labels: as "medseg")


def medseg_ids() -> list[str]:
    """The 65 MedSeg slice ids, sorted."""
    return sorted(p.stem for p in (MEDSEG / "images").glob("*.jpg"))


def folds(ids: list[str], k: int = 5) -> list[list[str]]:
    """``k`` folds of contiguous id blocks (upstream neighbours are often one patient, so
    contiguous blocks leak less than a random split; there are no patient ids)."""
    return [list(b) for b in np.array_split(np.array(sorted(ids)), k)]




def medseg_image(sid: str) -> sitk.Image:
    """MedSeg slice ``sid`` as a one-slice upright HU image mapped by its own peaks:
    :func:`lesionquant.evaluate.medseg_image`, so training and evaluation read the same HU."""
    from lesionquant.evaluate import medseg_image as _image

    return _image(MEDSEG / "images" / f"{sid}.jpg")


def medseg_hu(sid: str) -> np.ndarray:
    """:func:`medseg_image` as a 2D float32 array (rows anterior to posterior)."""
    return sitk.GetArrayFromImage(medseg_image(sid))[0]


def load_medseg(ids: list[str] | None = None) -> list[Slice]:
    """MedSeg slices as upright HU (per-slice peaks) with expert lesion classes."""
    from PIL import Image

    from lesionquant.evaluate import _medseg_upright

    out = []
    for sid in ids or medseg_ids():
        hu = medseg_hu(sid)
        with Image.open(MEDSEG / "masks" / f"{sid}.png") as im:
            les = _medseg_upright(np.asarray(im)).astype(np.uint8)
        out.append(Slice(sid, hu, np.full(les.shape, UNKNOWN, np.uint8),
                         les, MEDSEG_MM, "medseg"))
    return out


def _unlabelled_volumes() -> dict[str, list[Path]]:
    """The unlabelled slices of :data:`UNLABELLED` by volume, in file-name order."""
    import re

    vols: dict[str, list[Path]] = {}
    for f in sorted((UNLABELLED / "images").glob("*.jpg")):
        m = re.match(r"(.*)_(\d+)\.jpg$", f.name)
        if m:
            vols.setdefault(m.group(1), []).append(f)
    return vols


def load_unlabelled(volumes: list[str] | None = None) -> list[Slice]:
    """The 1600 unlabelled COVID-19 slices (20 volumes) as upright HU, no labels.

    The JPEGs of one volume share one window, so the gray-to-HU map is the volume's: the
    medians of its slices' lung and soft-tissue peaks (:func:`lesionquant._jpeg_hu.
    jpeg_to_hu`) mapped to -860 and 40 HU (a slice alone falls back to W1500 in a third of
    the coronacases slices, whose window is about W2600-W3200). Orientation: the
    Radiopaedia volumes are stored as the MedSeg slices (turned clockwise to upright),
    the coronacases volumes the other way round (turned counter-clockwise); looked at,
    one slice of every volume. Pixels 0.7 mm assumed, as for MedSeg. Licence CC BY-NC-SA
    4.0 (see the model card).
    """
    from PIL import Image

    from lesionquant._jpeg_hu import LUNG_HU, SOFT_TISSUE_HU, JpegHuMap, jpeg_to_hu
    from lesionquant.evaluate import _medseg_upright

    out = []
    for vol, files in _unlabelled_volumes().items():
        if volumes is not None and vol not in volumes:
            continue
        grays = []
        for f in files:
            with Image.open(f) as im:
                grays.append(np.asarray(im.convert("L"), dtype=np.float32))
        maps = [jpeg_to_hu(g) for g in grays]
        lung = float(np.median([m.lung_gray for m in maps]))
        soft = float(np.median([m.soft_gray for m in maps]))
        slope = (SOFT_TISSUE_HU - LUNG_HU) / max(soft - lung, 1.0)
        hu_map = JpegHuMap(slope, SOFT_TISSUE_HU - slope * soft, lung, soft, False)
        for f, g in zip(files, grays, strict=True):
            hu = hu_map.apply(g)
            # coronacases: turned the other way from MedSeg (a half turn more)
            hu = _medseg_upright(hu[::-1, ::-1] if vol.startswith("coronacases") else hu)
            unk = np.full(hu.shape, UNKNOWN, np.uint8)
            out.append(Slice(f.stem, hu, unk, unk.copy(), MEDSEG_MM, "unlabelled"))
    return out


def _resample_inplane(img: sitk.Image, mm: float, *, labels: bool) -> sitk.Image:
    sp = img.GetSpacing()
    size = [max(1, round(img.GetSize()[i] * sp[i] / mm)) for i in (0, 1)] + [img.GetSize()[2]]
    ref = sitk.Image(size, img.GetPixelID())
    ref.SetSpacing((mm, mm, sp[2]))
    ref.SetOrigin(img.GetOrigin())
    ref.SetDirection(img.GetDirection())
    interp = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    return sitk.Resample(img, ref, sitk.Transform(), interp, -1024.0 if not labels else 0.0)


def targets(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training targets of a label map (0 background, 1/2 right/left lung, 3/4 GGO /
    consolidation, 5 airway, 6 effusion): lung sides (each lesion voxel on the side of its
    nearest lung voxel; airway and effusion are not lung) and lesion classes (0 none, 1
    GGO, 2 consolidation), both uint8."""
    from lesionquant.segment import lesion_sides

    lab = np.where(labels >= 5, 0, labels).astype(np.uint8)
    return lesion_sides(lab), np.clip(lab.astype(np.int16) - 2, 0, 2).astype(np.uint8)


def _save_volume(name: str, image: sitk.Image, labels: np.ndarray, step: int,
                 min_lung_px: int = 200) -> None:
    """Labels 0-5 (1/2 lung sides, 3/4 GGO/consolidation, 5 airway) -> cached slices
    (every ``step``-th slice with more than ``min_lung_px`` lung pixels; ``-1``: all)."""
    image = sitk.DICOMOrient(image, "LPS")
    lab_img = sitk.GetImageFromArray(labels.astype(np.uint8))
    lab_img.CopyInformation(image)  # caller gives labels in the image's (oriented) grid
    hu = sitk.GetArrayFromImage(_resample_inplane(image, SPACING_MM, labels=False))
    lab = sitk.GetArrayFromImage(_resample_inplane(lab_img, SPACING_MM, labels=True))
    side, lesion = targets(lab)
    keep = [z for z in range(0, lab.shape[0], step) if (side[z] > 0).sum() > min_lung_px]
    if not keep:
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(CACHE / f"{name}.npz", hu=hu[keep].astype(np.int16),
                        lung=side[keep].astype(np.uint8), lesion=lesion[keep])
    logger.info("cached %s: %d slices", name, len(keep))


def _train_hosts():
    """(relative path, LPS image, classical lungs) of each of :data:`TRAIN_HOSTS`."""
    from lesionquant.io import load_scan
    from lesionquant.segment import segment_lungs
    from lesionquant.settings import Settings

    for rel in TRAIN_HOSTS:
        image = sitk.DICOMOrient(load_scan(DATA / rel).image, "LPS")
        yield rel, image, segment_lungs(image, Settings())


def build_synthetic(n_phantoms: int = 16, n_insert: int = 12) -> None:
    """Generate the synthetic training volumes into :data:`CACHE` (skips existing ones)."""
    from lesionquant.synth import insert_lesions, make_phantom

    rng = np.random.default_rng(2021)
    for i in range(n_phantoms):
        seed = 1000 + i
        name = f"phantom_{seed}"
        burden = float(rng.choice([0.0, 3.0, 8.0, 15.0, 25.0, 40.0]))
        thick = float(rng.choice([1.5, 2.5, 5.0]))
        kw = dict(seed=seed, lesion_burden_pct=burden,
                  ggo_fraction=float(rng.uniform(0.3, 0.9)),
                  crazy_paving=bool(rng.random() < 0.3),
                  consolidation_in_ggo=bool(rng.random() < 0.6),
                  contrast=bool(rng.random() < 0.3),
                  patient_scale=float(rng.uniform(0.85, 1.15)),
                  dose_factor=float(rng.choice([0.25, 1.0, 1.0])))
        if (CACHE / f"{name}.npz").exists():
            continue
        nz = int(300 / thick)
        ph = make_phantom(size_xyz=(240, 240, nz), spacing_mm=(1.5, 1.5, thick), **kw)
        _save_volume(name, ph.image, sitk.GetArrayFromImage(ph.labels),
                     step=max(1, round(6 / thick)))
    for rel, image, lungs in _train_hosts():
        for j in range(n_insert):
            seed = 1000 + j
            name = f"insert_{rel.split('/')[0]}_{seed}"
            if (CACHE / f"{name}.npz").exists():
                continue
            ins = insert_lesions(image, lungs, seed=seed,
                                 target_lesion_pct=float(rng.choice([3, 8, 15, 25, 40])),
                                 ggo_fraction=float(rng.uniform(0.3, 0.9)),
                                 crazy_paving=bool(rng.random() < 0.3),
                                 consolidation_in_ggo=bool(rng.random() < 0.6))
            _save_volume(name, ins.image, sitk.GetArrayFromImage(ins.labels), step=1)


def build_synthetic_v2(n_phantoms: int = 12, n_insert: int = 12) -> None:
    """Ground-truth v2 training volumes (tuning family only) into ``CACHE / "v2"``.

    Phantoms: the first ``n_phantoms`` tuning cases at 240 x 240 x 1.5 mm, slices of 1.5,
    2.5 or 5 mm in turn; insertions: the next ``n_insert`` tuning cases' lesions into each
    of :data:`TRAIN_HOSTS` (host lungs from the classical lung stage). Skips cached ones.
    """
    from lesionquant.synth import family_cases, insert_lesions, make_phantom

    out = CACHE / "v2"
    cases = family_cases("tuning", n_phantoms + n_insert)
    for case in cases[:n_phantoms]:
        name = f"v2/phantom_{case.seed}"
        if (CACHE / f"{name}.npz").exists():
            continue
        thick = (1.5, 2.5, 5.0)[case.index % 3]
        ph = make_phantom(size_xyz=(240, 240, int(300 / thick)), spacing_mm=(1.5, 1.5, thick),
                          seed=case.seed, lesions=case.lesions,
                          patient_scale=case.patient_scale, dose_factor=case.dose_factor)
        out.mkdir(parents=True, exist_ok=True)
        _save_volume(name, ph.image, sitk.GetArrayFromImage(ph.labels),
                     step=max(1, round(6 / thick)))
    for rel, image, lungs in _train_hosts():
        for case in cases[n_phantoms:]:
            name = f"v2/insert_{rel.split('/')[0]}_{case.seed}"
            if (CACHE / f"{name}.npz").exists():
                continue
            ins = insert_lesions(image, lungs, seed=case.seed, lesions=case.lesions)
            out.mkdir(parents=True, exist_ok=True)
            _save_volume(name, ins.image, sitk.GetArrayFromImage(ins.labels), step=1)


#: Real CT without lesions for training (lesion label 0 everywhere): lung bases and
#: upper abdomen (bowel and stomach gas, air between the back and the table are not lung)
#: with TotalSegmentator's lung lobes as lung labels, and the two training hosts
#: unchanged with their classical lungs. None of these is a reported case.
REAL_NEGATIVES = ("totalseg-abdomen-ct-no-lungs/ct_small_30slices.nii.gz",)
#: TotalSegmentator v2 lobe ids: right lung (upper, middle, lower), left lung (upper, lower).
TS_RIGHT, TS_LEFT = (12, 13, 14), (10, 11)


def build_real_negatives() -> None:
    """Cache the real lesion-free training slices of :data:`REAL_NEGATIVES` and
    :data:`TRAIN_HOSTS` under ``CACHE / "real"`` (every slice, with or without lung)."""
    from lesionquant.io import load_scan

    (CACHE / "real").mkdir(parents=True, exist_ok=True)
    ts = DATA / "totalseg-abdomen-ct-no-lungs"
    name = "real/totalseg_small"
    if not (CACHE / f"{name}.npz").exists():
        image = sitk.DICOMOrient(load_scan(DATA / REAL_NEGATIVES[0]).image, "LPS")
        lobes = sitk.DICOMOrient(
            sitk.ReadImage(str(ts / "totalseg_model_labels_for_ct_small.nii.gz")), "LPS")
        lab = sitk.GetArrayFromImage(lobes)
        sides = np.where(np.isin(lab, TS_RIGHT), 1, np.where(np.isin(lab, TS_LEFT), 2, 0))
        _save_volume(name, image, sides, step=1, min_lung_px=-1)
    for rel, image, lungs in _train_hosts():
        name = f"real/host_{rel.split('/')[0]}"
        if not (CACHE / f"{name}.npz").exists():
            _save_volume(name, image, sitk.GetArrayFromImage(lungs), step=1)


#: The cached synthetic generations by name (glob patterns under :data:`CACHE`); "real"
#: holds the real lesion-free slices of :func:`build_real_negatives`.
GENERATIONS = {"v1": ("*.npz",), "v2": ("v2/*.npz",), "all": ("*.npz", "v2/*.npz"),
               "real": ("real/*.npz",)}


def load_synthetic(generation: str = "all") -> list[Slice]:
    """Every cached synthetic slice of ``generation`` (``v1``, ``v2`` or ``all``)."""
    out = []
    files = sorted({f for pat in GENERATIONS[generation] for f in CACHE.glob(pat)})
    for f in files:
        with np.load(f) as z:
            hu, lung, lesion = z["hu"].astype(np.float32), z["lung"], z["lesion"]
        for i in range(hu.shape[0]):
            name = f"{f.relative_to(CACHE).with_suffix('')}:{i}"
            out.append(Slice(name, hu[i], lung[i], lesion[i], SPACING_MM, "synth"))
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    build_synthetic()
    build_synthetic_v2()
    build_real_negatives()
