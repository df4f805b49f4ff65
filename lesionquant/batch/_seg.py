"""DICOM SEG export of a result's label map, referencing the source CT series.

The SEG holds one segment per class present in the label map, in this order: right lung
(label 1), left lung (2), ground-glass opacity (3), consolidation (4). Like ``labels.nii.gz``
the classes are exclusive: a GGO voxel is in the GGO segment, not in the lung segments (the
full lung is the union of the four). Frames are placed at the label map's own slice positions
(``PlanePositionSequence``), so the SEG is right even when the loader resampled the series
(gantry tilt, uneven spacing); PACS, 3D Slicer and OHIF overlay it on the source series, which
it references (``ReferencedSeriesSequence``, same Study and Frame of Reference UIDs).

By default the SEG is de-identified with the DICOM PS3.15 Basic Application Level
Confidentiality Profile (Retain UIDs and Retain Full Dates options) over everything it copies
from the source, nested sequences included (e.g. InstitutionName in the contributing
equipment), and carries the pseudonym as PatientName and PatientID; pass
``patient_pseudonym=None`` (``--keep-identifiers``) to keep them, as a hospital PACS needs.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lesionquant._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

__all__ = ["SEGMENT_CLASSES", "write_seg"]

logger = logging.getLogger(__name__)

#: label value -> (segment label, category (scheme, code, meaning), type (scheme, code, meaning))
SEGMENT_CLASSES: dict[int, tuple[str, tuple[str, str, str], tuple[str, str, str]]] = {
    1: ("Right lung", ("SCT", "91723000", "Anatomical Structure"),
        ("SCT", "3341006", "Right lung")),
    2: ("Left lung", ("SCT", "91723000", "Anatomical Structure"),
        ("SCT", "44029006", "Left lung")),
    3: ("Ground-glass opacity", ("SCT", "49755003", "Morphologically Abnormal Structure"),
        ("DCM", "112120", "Ground glass opacity")),
    4: ("Consolidation", ("SCT", "49755003", "Morphologically Abnormal Structure"),
        ("SCT", "95436008", "Lung consolidation")),
}

_SERIES_NUMBER = 7100
#: DICOM PS3.15 Annex E Table E.1-1, Basic Application Level Confidentiality Profile, for the
#: attributes a SEG can copy from its CT source (patient, study and equipment modules, also
#: inside ContributingEquipmentSequence): "Z" emptied (type 2), "X" removed. PatientName and
#: PatientID ("D") get the pseudonym. Options applied: Retain UIDs (the SEG must reference its
#: source) and Retain Longitudinal Temporal Information with Full Dates (result.json keeps the
#: study date for the endpoint); see docs/batch.md.
_BASIC_PROFILE = {
    **dict.fromkeys(("PatientBirthDate", "PatientSex", "AccessionNumber",
                     "ReferringPhysicianName", "StudyID", "ContentCreatorName"), "Z"),
    **dict.fromkeys((
        "PatientAge", "PatientAddress", "PatientWeight", "PatientSize", "PatientBirthTime",
        "PatientBirthName", "PatientMotherBirthName", "PatientTelephoneNumbers",
        "OtherPatientIDs", "OtherPatientNames", "OtherPatientIDsSequence", "IssuerOfPatientID",
        "EthnicGroup", "MilitaryRank", "BranchOfService", "MedicalRecordLocator",
        "MedicalAlerts", "Allergies", "CountryOfResidence", "RegionOfResidence", "Occupation",
        "AdditionalPatientHistory", "PatientComments", "PatientReligiousPreference",
        "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
        "InstitutionCodeSequence", "StationName", "DeviceSerialNumber", "OperatorsName",
        "PerformingPhysicianName", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
        "RequestingPhysician", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
        "StudyDescription", "RequestAttributesSequence", "AdmittingDiagnosesDescription",
        "ReferencedPatientSequence", "ReferencedStudySequence", "PerformedProcedureStepID",
        "ScheduledProcedureStepID", "RequestedProcedureID"), "X"),
}
#: CID 7050 codes of the profile and options applied (DeidentificationMethodCodeSequence).
_PROFILE_CODES = (("113100", "Basic Application Confidentiality Profile"),
                  ("113110", "Retain UIDs Option"),
                  ("113106", "Retain Longitudinal Temporal Information Full Dates Option"))


def _deidentify(seg: Any, patient_pseudonym: str) -> None:
    """Apply :data:`_BASIC_PROFILE` to ``seg`` (nested sequences included), in place."""
    from pydicom.dataset import Dataset

    def walk(ds: Any) -> None:
        for keyword, action in _BASIC_PROFILE.items():
            if keyword in ds:
                if action == "Z":
                    ds.data_element(keyword).value = ""
                else:
                    del ds[keyword]
        for element in list(ds):
            if element.VR == "SQ":
                for item in element.value:
                    walk(item)

    own_serial = seg.get("DeviceSerialNumber")  # lesionquant's own (type 1 in a SEG)
    seg.remove_private_tags()
    walk(seg)
    if own_serial is not None:
        seg.DeviceSerialNumber = own_serial
    seg.PatientName = f"{patient_pseudonym}^"  # family name only, not a retired PN form
    seg.PatientID = patient_pseudonym
    seg.PatientIdentityRemoved = "YES"
    seg.DeidentificationMethod = "PS3.15 Basic Profile, Retain UIDs, Full Dates; pseudonym"
    codes = []
    for value, meaning in _PROFILE_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    seg.DeidentificationMethodCodeSequence = codes


def write_seg(labelmap: sitk.Image, source_files: Sequence[str | os.PathLike[str]],
              path: str | os.PathLike[str], *, patient_pseudonym: str | None = None,
              method: str = "classical") -> bool:
    """Write ``labelmap`` as a DICOM SEG (BINARY) referencing the series in ``source_files``.

    Parameters
    ----------
    labelmap : SimpleITK.Image
        uint8 label map (0 background, 1 right lung, 2 left lung, 3 GGO, 4 consolidation) in
        the scan's geometry (LPS, mm).
    source_files : sequence of path
        The DICOM files of the source series (``Scan.files``); read headers only.
    path : path
        Output file (``seg.dcm``).
    patient_pseudonym : str, optional
        Replace patient name and ID by this pseudonym and blank other identifying attributes.
        ``None`` keeps the source's patient module.
    method : str
        Segmentation method (``"classical"`` or ``"model"``), recorded as the algorithm
        (family: histogram analysis or artificial intelligence).

    Returns
    -------
    bool
        False when the label map has no labelled voxel (nothing written).
    """
    import highdicom as hd
    import pydicom
    import SimpleITK as sitk
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    labels = sitk.GetArrayViewFromImage(labelmap)  # (z, y, x)
    present = [v for v in SEGMENT_CLASSES if np.any(labels == v)]
    if not present:
        logger.info("%s: empty label map, no DICOM SEG written", path)
        return False
    sources = [pydicom.dcmread(os.fspath(f), stop_before_pixels=True) for f in source_files]
    # Segment numbers must run 1..n: map present labels onto them.
    lut = np.zeros(256, dtype=np.uint8)
    for number, value in enumerate(present, start=1):
        lut[value] = number
    pixels = lut[labels]
    family = (codes.cid7162.ArtificialIntelligence if method == "model"
              else codes.cid7162.HistogramAnalysis)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"lesionquant {method}", version=__version__, family=family)
    descriptions = []
    for number, value in enumerate(present, start=1):
        label, cat, typ = SEGMENT_CLASSES[value]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label,
            segmented_property_category=Code(cat[1], cat[0], cat[2]),
            segmented_property_type=Code(typ[1], typ[0], typ[2]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=hd.UID(), tracking_id=f"lesionquant label {value}"))
    direction = np.asarray(labelmap.GetDirection(), dtype=float).reshape(3, 3)
    spacing = labelmap.GetSpacing()
    orientation = hd.PlaneOrientationSequence(
        coordinate_system="PATIENT",
        image_orientation=[*direction[:, 0].tolist(), *direction[:, 1].tolist()])
    measures = hd.PixelMeasuresSequence(
        pixel_spacing=[float(spacing[1]), float(spacing[0])],
        slice_thickness=float(spacing[2]), spacing_between_slices=float(spacing[2]))
    positions = [
        hd.PlanePositionSequence(
            coordinate_system="PATIENT",
            image_position=[float(c) for c in labelmap.TransformIndexToPhysicalPoint((0, 0, k))])
        for k in range(labelmap.GetSize()[2])
    ]
    with warnings.catch_warnings():
        # highdicom warns about odd person names copied from the source, quoting them: that
        # would put patient names on stderr / in logs.
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=hd.UID(),
            series_number=_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="lesionquant", manufacturer_model_name="lesionquant",
            software_versions=__version__, device_serial_number="none",
            series_description="lesionquant lungs GGO consolidation",
            content_label="LESIONQUANT", content_description="Lungs, GGO and consolidation",
            pixel_measures=measures, plane_orientation=orientation, plane_positions=positions,
            omit_empty_frames=True)
    if patient_pseudonym is not None:
        _deidentify(seg, patient_pseudonym)
    tmp = f"{os.fspath(path)}.tmp"
    seg.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, path)
    return True
