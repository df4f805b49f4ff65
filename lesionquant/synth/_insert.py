"""Insert COVID-19-pattern lesions into a real CT inside its lung mask (``insert_lesions``).

The shapes, GGO/consolidation split and attenuation model are those of
:mod:`lesionquant.synth._lesions` (shared with the phantom). What insertion adds is the
match to the host scan: the host's noise is estimated (robust MAD of an in-plane
high-pass in soft tissue) and the noise that the air-to-tissue fill removes is put back
as correlated noise of the same level, so a lesion has the grain of the scan it sits in;
edges are blurred over ~0.7 mm (partial volume) and air bronchograms are only drawn
when the pixels are small enough to show them (< 2 mm).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.ndimage as ndi
import SimpleITK as sitk

from lesionquant.errors import GeometryError, InvalidInputError, NoLungError
from lesionquant.segment.labels import LUNG_LABELS, Label
from lesionquant.synth._disease import EFFUSION_HU, LesionParams, make_disease
from lesionquant.synth._fields import correlated_noise
from lesionquant.synth._lesions import apply_fill, make_lesions
from lesionquant.synth._results import Insertion

logger = logging.getLogger(__name__)

__all__ = ["estimate_noise_hu", "insert_lesions"]

AIR_HU = -1000.0
"""Attenuation of the air in a bronchial lumen, HU."""

_HP_FACTOR = 0.68
"""Robust std of ``x - G1*x`` over std of ``x`` for CT-like noise (white noise smoothed
in-plane with a Gaussian of 0.6 voxel, a typical soft/standard kernel; 0.87 for white
noise, 0.59 for 0.7 voxel correlation), measured with ``correlated_noise``."""


def estimate_noise_hu(hu: np.ndarray) -> float:
    """Estimate the noise standard deviation of a CT, HU.

    Robust MAD of an in-plane high-pass (image minus a 1-voxel Gaussian blur; on at most
    24 evenly spaced slices) over
    homogeneous soft tissue (-150..150 HU, eroded, low local gradient), corrected for the
    part of kernel-correlated noise the high-pass keeps (``_HP_FACTOR``). The estimate is
    within about +-20 % for kernels between white and 0.7-voxel correlation.

    Parameters
    ----------
    hu : (Z, Y, X) ndarray
        CT in HU.

    Returns
    -------
    float
        Noise std, HU (15 HU when the scan has no usable soft tissue).
    """
    a = np.asarray(hu)
    if a.shape[0] > 24:  # 24 evenly spaced slices are plenty for a noise level
        a = a[np.linspace(0, a.shape[0] - 1, 24).round().astype(int)]
    a = a.astype(np.float32)
    hp = a - ndi.gaussian_filter(a, 1.0, axes=(1, 2))
    soft = (a > -150) & (a < 150)
    soft = ndi.binary_erosion(soft, structure=np.ones((1, 5, 5), bool))
    smooth = ndi.gaussian_filter(a, 2.0, axes=(1, 2))
    grad = np.hypot(ndi.sobel(smooth, axis=1), ndi.sobel(smooth, axis=2))
    region = soft & (grad < np.percentile(grad[soft], 50) if soft.any() else soft)
    if region.sum() < 200:
        logger.debug("noise estimate: too little soft tissue, using 15 HU")
        return 15.0
    v = hp[region]
    mad = float(np.median(np.abs(v - np.median(v))))
    return 1.4826 * mad / _HP_FACTOR


def insert_lesions(
    image: sitk.Image,
    lung_labels: sitk.Image,
    *,
    seed: int = 0,
    target_lesion_pct: float = 10.0,
    ggo_fraction: float = 0.7,
    crazy_paving: bool = False,
    consolidation_in_ggo: bool = True,
    bronchograms: bool = True,
    noise_hu: float | None = None,
    min_lung_ml: float = 1.0,
    min_lung_fraction: float = 0.05,
    lesions: LesionParams | None = None,
) -> Insertion:
    """Insert COVID-19-like GGO and consolidation into a real CT, inside its lungs.

    Parameters
    ----------
    image : SimpleITK.Image
        3D CT in HU (integer or float pixels), any orientation.
    lung_labels : SimpleITK.Image
        Lung mask in the same geometry: 1 right, 2 left (any non-zero value up to 4 is
        lung; existing 3/4 values are treated as lung and overwritten).
    seed : int
        Same seed and inputs give an identical result.
    target_lesion_pct : float
        Lesion volume as % of the lung volume, met to the voxel.
    ggo_fraction : float
        Share of the lesion volume that is GGO (0..1); the rest is consolidation.
    crazy_paving : bool
        Thickened-septa reticulation over the GGO.
    consolidation_in_ggo : bool
        Consolidation as dense cores inside GGO (True) or as lesions of its own (False).
    bronchograms : bool
        Air bronchograms in consolidation (only drawn when pixels are < 2 mm).
    noise_hu : float, optional
        Host noise level; estimated from the image when omitted.
    min_lung_ml : float
        Fewer lung mL than this raises :class:`NoLungError`.
    min_lung_fraction : float
        Lung below this fraction of the scanned body (voxels > -500 HU or lung) raises
        :class:`NoLungError` (an abdomen scan with a little bowel gas or lung base).
    lesions : LesionParams, optional
        The v2 lesion model (``docs/synth.md``): its ``burden_pct`` replaces
        ``target_lesion_pct`` and the other legacy pattern arguments are ignored; a
        pleural effusion (``effusion_ml``) replaces the most dependent lung of one side
        by fluid (label 6, no longer lung: ``lung_ml`` counts labels 1-4 of the result).
        Lower lobes are taken behind and below an oblique plane through each lung.
        Without it the v1 model runs unchanged.

    Returns
    -------
    Insertion
        New image (input pixel type and geometry), label map (0-4) and true volumes.

    Raises
    ------
    NoLungError
        The mask holds (almost) no lung.
    GeometryError
        The mask's grid differs from the image's.
    """
    if image.GetDimension() != 3 or lung_labels.GetDimension() != 3:
        raise InvalidInputError("insert_lesions needs 3D images", source="image")
    if (image.GetSize() != lung_labels.GetSize()
            or not np.allclose(image.GetSpacing(), lung_labels.GetSpacing(), atol=1e-4)
            or not np.allclose(image.GetOrigin(), lung_labels.GetOrigin(), atol=1e-3)
            or not np.allclose(image.GetDirection(), lung_labels.GetDirection(), atol=1e-4)):
        raise GeometryError("lung mask grid differs from the image grid", source="lung_labels")
    if not 0.0 <= target_lesion_pct < 100.0:
        raise ValueError("target_lesion_pct must be in [0, 100)")
    if not 0.0 <= ggo_fraction <= 1.0:
        raise ValueError("ggo_fraction must be in [0, 1]")

    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    lab = sitk.GetArrayFromImage(lung_labels).astype(np.uint8)
    lung = np.isin(lab, LUNG_LABELS)
    spacing_xyz = image.GetSpacing()
    voxel_ml = float(np.prod(spacing_xyz)) / 1000.0
    lung_ml = float(lung.sum() * voxel_ml)
    body = ((hu > -500) | lung).sum()
    fraction = float(lung.sum() / body) if body else 0.0
    if lung_ml < min_lung_ml or fraction < min_lung_fraction:
        raise NoLungError(
            f"too little lung to insert lesions: {lung_ml:.1f} mL, {100 * fraction:.1f} % of "
            f"the scanned body (need {min_lung_ml} mL and {100 * min_lung_fraction:.0f} %)",
            source="lung_labels")

    lung_lab = np.where(lung, np.where(lab > Label.LEFT_LUNG, Label.RIGHT_LUNG, lab),
                        0).astype(np.uint8)
    # work in the lung's bounding box (plus a margin) to bound time and memory
    nzi = np.argwhere(lung)
    lo = np.maximum(nzi.min(0) - 3, 0)
    hi = np.minimum(nzi.max(0) + 4, lung.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=False))

    d = np.array(image.GetDirection(), float).reshape(3, 3)  # columns: index axes x, y, z
    posterior_zyx = (d[1, 2], d[1, 1], d[1, 0])
    superior_zyx = (d[2, 2], d[2, 1], d[2, 0])
    spacing_zyx = tuple(float(v) for v in spacing_xyz[::-1])
    rng = np.random.default_rng(seed)
    edge = max(0.7, 0.4 * float(max(spacing_zyx[1:])))
    if lesions is not None:
        model = make_disease(lung_lab[box], spacing_zyx, rng, lesions,
                             posterior_zyx=posterior_zyx, superior_zyx=superior_zyx,
                             edge_mm=edge)
    else:
        # partial volume of the host's voxels: at least 0.7 mm, ~0.4 voxel on coarse scans
        model = make_lesions(
            lung_lab[box], spacing_zyx, rng, target_lesion_pct=target_lesion_pct,
            ggo_fraction=ggo_fraction, posterior_zyx=posterior_zyx,
            superior_zyx=superior_zyx, consolidation_in_ggo=consolidation_in_ggo,
            crazy_paving=crazy_paving, bronchograms=bronchograms, edge_mm=edge)
    sigma = float(noise_hu) if noise_hu is not None else estimate_noise_hu(hu)
    sub = hu[box]
    new = apply_fill(sub, model.fill)
    effusion = np.zeros(sub.shape, bool)
    if lesions is not None:
        effusion = model.classes == 3
        new[effusion] = EFFUSION_HU
        if model.air is not None:  # air bronchograms: bronchial air, not the host's lung
            new = new + model.air * (AIR_HU - new)
    # put back the noise the fill removed: host noise scaled by (1 - f), add the rest
    fill = np.where(effusion, 1.0, model.fill)
    keep = (1.0 - fill) ** 2
    extra = sigma * np.sqrt(np.clip(1.0 - keep, 0.0, 1.0))
    touched = fill > 0.01
    if touched.any():
        noise = correlated_noise(sub.shape, rng, sigma_vox=0.6)
        new = np.where(touched & (sub < 40.0), new + extra * noise, new)
    hu_out = hu.copy()
    hu_out[box] = new

    labels = lung_lab.copy()
    lab_box = labels[box]
    lab_box[model.classes == 1] = Label.GGO
    lab_box[model.classes == 2] = Label.CONSOLIDATION
    lab_box[effusion] = Label.EFFUSION
    out = _like(hu_out, image)
    lab_img = sitk.GetImageFromArray(labels)
    lab_img.CopyInformation(image)
    counts = np.bincount(labels.ravel(), minlength=7)
    lesion_ml = float((counts[3] + counts[4]) * voxel_ml)
    lung_ml = float(counts[1:5].sum() * voxel_ml)
    ins = Insertion(
        image=out, labels=lab_img, lung_ml=lung_ml, lesion_ml=lesion_ml,
        ggo_ml=float(counts[3] * voxel_ml), consolidation_ml=float(counts[4] * voxel_ml),
        lesion_pct=100.0 * lesion_ml / lung_ml, host_noise_hu=sigma, seed=int(seed),
        params=dict(seed=int(seed), target_lesion_pct=float(target_lesion_pct),
                    ggo_fraction=float(ggo_fraction), crazy_paving=bool(crazy_paving),
                    consolidation_in_ggo=bool(consolidation_in_ggo),
                    bronchograms=bool(bronchograms), noise_hu=sigma,
                    n_lesions=model.n_lesions,
                    generator="v2" if lesions is not None else "v1",
                    lesions=lesions.to_dict() if lesions is not None else None),
        effusion_ml=float(counts[Label.EFFUSION] * voxel_ml),
    )
    logger.info("inserted %d lesion blobs: %.2f mL (%.2f %% of %.1f mL lung), host noise %.1f HU",
                model.n_lesions, lesion_ml, ins.lesion_pct, lung_ml, sigma)
    return ins


def _like(hu: np.ndarray, ref: sitk.Image) -> sitk.Image:
    """``hu`` as an image of ``ref``'s pixel type (rounded and clipped) and geometry."""
    pid = ref.GetPixelID()
    ranges = {sitk.sitkInt16: (-32768, 32767), sitk.sitkInt32: (-2**31, 2**31 - 1),
              sitk.sitkUInt16: (0, 65535), sitk.sitkInt8: (-128, 127), sitk.sitkUInt8: (0, 255)}
    if pid in ranges:
        lo, hi = ranges[pid]
        dtype = sitk.GetArrayViewFromImage(ref).dtype
        arr = np.clip(np.rint(hu), lo, hi).astype(dtype)
    else:
        arr = hu.astype(sitk.GetArrayViewFromImage(ref).dtype)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(ref)
    return out
