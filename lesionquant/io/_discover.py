"""Find DICOM series under a path, describe them and choose the CT series to quantify.

Folders are walked recursively in sorted order. Only headers are read
(``dcmread(stop_before_pixels=True)``) and only from regular files (named pipes, sockets and
devices are never opened: reading one would block). DICOMDIR and Philips DIRFILE index files
are skipped and never followed; files that are not DICOM are skipped, **except** files that
look like a lost slice (:func:`is_suspect_slice`: empty, shorter than a DICOM preamble,
unreadable, a dangling link, or DICOM that cannot be parsed, named like a slice): those are
recorded in ``Discovery.suspects`` and refuse the series they sit beside (see
:func:`suspects_of`). Files are grouped by
SeriesInstanceUID and, inside a series, by image size, pixel spacing, orientation and
image-type class (ORIGINAL vs DERIVED), so mixed series split cleanly.

Choice rules (a series is *excluded* with a reason, else it is a *candidate*):

* DICOM SEG, secondary capture, non-image objects, non-CT modality: excluded (refused even
  when forced by UID).
* ImageType DERIVED or SECONDARY (maps, screenshots that can carry burned-in patient data):
  excluded (refused even when forced).
* Multi-frame CT whose per-frame functional groups cannot be read: excluded (refused). Readable
  enhanced / legacy-converted multi-frame CT is expanded into one slice per frame.
* LOCALIZER (scout) images and non-axial reformats: excluded (loadable when forced by UID).

Among candidates the best covers the most of the body axis up to full lung coverage
(:data:`LUNG_COVERAGE_MM`), then has the thinnest slices, then the most slices.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from lesionquant.errors import (
    AmbiguousInputError,
    DicomDecodeError,
    InvalidInputError,
    NoSeriesError,
    UnsupportedDicomError,
)
from lesionquant.io._geometry import orientation_key
from lesionquant.io._header import (
    NATIVE_LE_SYNTAXES,
    SliceHeader,
    looks_like_dicom,
    read_header,
)

__all__ = ["LUNG_COVERAGE_MM", "NON_SLICE_EXTENSIONS", "Discovery", "SeriesInfo", "choose_series",
           "discover_series", "is_suspect_slice", "iter_files", "suspects_of"]

logger = logging.getLogger(__name__)

LUNG_COVERAGE_MM = 150.0
"""Extent along the body axis that covers adult lungs; longer series are not preferred more."""

_INDEX_NAMES = {"DICOMDIR", "DIRFILE"}
#: Extensions of files that are never a slice (documents, pictures, archives, volume files):
#: such a file next to a series is unrelated, whatever its size or content.
NON_SLICE_EXTENSIONS = frozenset({
    ".txt", ".md", ".rtf", ".pdf", ".doc", ".docx", ".xls", ".xlsx", ".csv", ".tsv", ".json",
    ".xml", ".html", ".htm", ".ini", ".cfg", ".log", ".inf", ".sh", ".bat", ".cmd", ".exe",
    ".dll", ".jar", ".js", ".css", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff",
    ".svg", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".tar", ".nii", ".nrrd",
    ".nhdr", ".mha", ".mhd", ".raw", ".py", ".db", ".sqlite", ".lock", ".md5", ".sha256"})
#: Names (upper case, without extension) of files that are never a slice.
_NON_SLICE_NAMES = frozenset({"README", "LICENSE", "LICENCE", "VERSION", "LOCKFILE",
                              "THUMBS", "DESKTOP", "AUTORUN", "INDEX", "CHECKSUMS"})
#: A DICOM file is at least the 128-byte preamble and the ``DICM`` marker long.
_MIN_DICOM_BYTES = 132
_SEG_SOP = "1.2.840.10008.5.1.4.1.1.66.4"
_SC_SOP_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_ENHANCED_CT_SOP = "1.2.840.10008.5.1.4.1.1.2.1"
_CT_SOP_PREFIX = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage and its enhanced variants
_MEDIA_DIR_SOP = "1.2.840.10008.1.3.10"
_REFUSED_KINDS = {"seg", "secondary-capture", "not-image", "not-ct", "derived", "enhanced",
                  "unsupported"}


@dataclass
class SeriesInfo:
    """One series (or one geometry group of a series) found under the input path.

    Attributes
    ----------
    key : str
        Unique key: SeriesInstanceUID, with ``#2``, ``#3``... for further geometry groups.
    series_uid : str
        SeriesInstanceUID ("" when absent).
    headers : list of SliceHeader
    excluded : str
        Why the series is not a candidate ("" for candidates).
    exclusion_kind : str
        Machine-readable class of the exclusion ("localizer", "derived", "not-ct", ...).
    chosen : bool
    reason : str
        Why it was chosen (or why not, for candidates that lost).
    """

    key: str
    series_uid: str
    headers: list[SliceHeader]
    excluded: str = ""
    exclusion_kind: str = ""
    chosen: bool = False
    reason: str = ""
    extent_mm: float = field(default=0.0)

    @property
    def first(self) -> SliceHeader:
        return self.headers[0]

    @property
    def short_uid(self) -> str:
        """Last 12 characters of the key (UIDs share long prefixes)."""
        if len(self.key) <= 17 or self.key.startswith("no-uid-"):
            return self.key
        return "..." + self.key[-12:]

    @property
    def n_files(self) -> int:
        return len(self.headers)

    @property
    def n_positions(self) -> int:
        """Distinct slice positions (duplicates counted once)."""
        pos = [h.position for h in self.headers if h.position is not None]
        if not pos:
            return self.n_files
        return len({tuple(round(v, 2) for v in p) for p in pos}) + (self.n_files - len(pos))


@dataclass
class Discovery:
    """Result of walking a path."""

    root: str
    series: list[SeriesInfo]
    skipped_non_dicom: int = 0
    skipped_index: int = 0
    unreadable: list[str] = field(default_factory=list)
    suspects: dict[str, str] = field(default_factory=dict)
    """Files that look like a lost slice -> why they could not be read (one line)."""
    skipped_special: list[str] = field(default_factory=list)
    """Entries that are not regular files (named pipes, sockets, devices): never opened."""


def _name_could_be_slice(path: str) -> bool:
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    if ext.lower() in NON_SLICE_EXTENSIONS:
        return False
    return stem.upper() not in _NON_SLICE_NAMES and base.upper() not in _INDEX_NAMES


def is_suspect_slice(path: str) -> str:
    """Why a file that is not readable DICOM looks like a lost slice ("" when unrelated).

    The rule (``docs/loader.md``): a file whose name could be a slice (not an index file,
    not a known document / picture / archive / volume extension, not README & co.) is a
    *suspect* when it is empty, shorter than a DICOM preamble (132 bytes), cannot be read
    (permissions, I/O error), or is a dangling or looping symbolic link. Larger readable files
    without the DICOM marker are unrelated (skipped as before). DICOM files that cannot be
    parsed, or whose header or pixel data is cut, are suspects whatever their name.
    """
    if not _name_could_be_slice(path):
        return ""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not stat.S_ISREG(st.st_mode):
        return ""
    if st.st_size == 0:
        return "empty file"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    if st.st_size < _MIN_DICOM_BYTES:
        return f"only {st.st_size} bytes (shorter than a DICOM preamble)"
    return ""


def suspects_of(disc: Discovery, series: SeriesInfo) -> dict[str, str]:
    """The suspect files (lost slices) that sit in a folder holding slices of ``series``.

    A lost slice cannot say which series it belonged to; one beside the series' own files
    may be one of its slices, so the series is incomplete until proven otherwise.
    """
    folders = {os.path.dirname(h.path) for h in series.headers}
    return {p: why for p, why in disc.suspects.items() if os.path.dirname(p) in folders}


def iter_files(root: str) -> Iterator[str]:
    """Files under ``root`` (or ``root`` itself), sorted, skipping hidden entries.

    Every non-folder entry is yielded, named pipes and dangling links included: the caller
    decides (:func:`_read_all` opens regular files only). Folder symlinks are not followed.
    """
    if os.path.isfile(root):
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield os.path.join(dirpath, name)


def _read_all(paths: Iterable[str], disc: Discovery, strict: bool) -> list[SliceHeader]:
    headers = []
    for path in paths:
        if os.path.basename(path).upper() in _INDEX_NAMES:
            disc.skipped_index += 1
            continue
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0  # dangling or looping link: judged by is_suspect_slice below
        if mode and not stat.S_ISREG(mode):
            if strict:
                raise InvalidInputError("not a regular file (named pipe, socket or device); "
                                        "only regular files are read", source=path)
            logger.warning("%s: not a regular file, not opened", path)
            disc.skipped_special.append(path)
            continue
        if not mode or not looks_like_dicom(path):
            why = is_suspect_slice(path)
            if strict:
                raise InvalidInputError(why or "not a DICOM file (no DICM marker) and not a "
                                        "known volume format", source=path)
            if why:
                disc.suspects[path] = why
            else:
                disc.skipped_non_dicom += 1
            continue
        try:
            h = read_header(path, force=True)
        except DicomDecodeError as exc:
            if strict:
                raise
            logger.warning("unreadable DICOM file: %s", exc)
            disc.unreadable.append(path)
            disc.suspects[path] = exc.problem
            continue
        if h.sop_class_uid == _MEDIA_DIR_SOP:
            disc.skipped_index += 1
            continue
        problem = _incomplete(h)
        if problem:
            if strict:
                raise DicomDecodeError(problem, source=path)
            logger.warning("unreadable DICOM file: %s: %s", path, problem)
            disc.unreadable.append(path)
            disc.suspects[path] = problem
            continue
        headers.extend(h.frame_headers or (h,))
    return headers


def _incomplete(h: SliceHeader) -> str:
    """Why a header that pydicom read without error is still unusable ("" when fine).

    pydicom stops quietly at the end of a truncated file, so a cut header shows up as a
    dataset without SOPClassUID and Rows, or a CT image without Rows/Columns or pixel data
    (some real exports lack SOPClassUID, so that alone is not a reason).
    """
    if not h.sop_class_uid and (h.rows is None or h.columns is None):
        return "incomplete header (no SOPClassUID, no Rows/Columns): truncated file?"
    if h.modality in ("CT", "") and (h.rows is None or h.columns is None) and (
            h.sop_class_uid.startswith("1.2.840.10008.5.1.4.1.1.2")):
        return "truncated header: CT image without Rows/Columns"
    if h.transfer_syntax in NATIVE_LE_SYNTAXES and h.rows and h.columns and (
            h.pixel_offset is None):
        return "truncated file: no pixel data element after the header"
    return ""


def _type_class(h: SliceHeader) -> str:
    it = h.image_type
    if any(v in ("DERIVED", "SECONDARY") for v in it[:2]):
        return "derived"
    if "LOCALIZER" in it:
        return "localizer"
    return "original"


def _group(headers: Sequence[SliceHeader]) -> list[SeriesInfo]:
    groups: dict[tuple, list[SliceHeader]] = {}
    for h in headers:
        # No SeriesInstanceUID: group by study, series number and folder; the key is a hash
        # so that folder names (which can hold patient names) are never shown.
        uid = h.series_uid or "no-uid-" + hashlib.sha1(
            f"{h.study_uid}|{h.series_number}|{os.path.dirname(h.path)}".encode()).hexdigest()[:10]
        spacing = None if h.pixel_spacing is None else tuple(round(v, 4) for v in h.pixel_spacing)
        sub = (h.rows, h.columns, spacing, orientation_key(h.orientation), _type_class(h),
               h.sop_class_uid)
        groups.setdefault((uid, sub), []).append(h)
    by_uid: dict[str, list[list[SliceHeader]]] = {}
    for (uid, _), hs in groups.items():
        by_uid.setdefault(uid, []).append(hs)
    out = []
    for uid, lists in by_uid.items():
        lists.sort(key=lambda hs: -len(hs))
        for i, hs in enumerate(lists):
            out.append(SeriesInfo(key=uid if i == 0 else f"{uid}#{i + 1}",
                                  series_uid="" if uid.startswith("no-uid-") else uid,
                                  headers=hs))
    out.sort(key=lambda s: (s.first.series_number if s.first.series_number is not None
                            else 1 << 30, s.key))
    return out


def _classify(s: SeriesInfo) -> None:
    h = s.first
    it = h.image_type
    kinds: list[tuple[str, str]] = []
    if h.sop_class_uid == _SEG_SOP or h.modality == "SEG":
        kinds.append(("seg", "DICOM SEG (a segmentation, not an image)"))
    elif h.sop_class_uid.startswith(_SC_SOP_PREFIX):
        kinds.append(("secondary-capture", "secondary capture (screenshot or map; may carry "
                      "burned-in patient data)"))
    elif not h.has_pixel_data or not h.rows or not h.columns:
        kinds.append(("not-image", "no image pixel data"))
    elif h.modality and h.modality != "CT":
        kinds.append(("not-ct", f"modality {h.modality}, not CT"))
    elif not h.modality and h.sop_class_uid and not h.sop_class_uid.startswith(_CT_SOP_PREFIX):
        kinds.append(("not-ct", f"no Modality and SOP class {h.sop_class_uid} is not CT"))
    elif _type_class(h) == "derived":
        kinds.append(("derived", f"derived image ({'/'.join(it)}), not original HU"))
    elif h.frame_index is None and (h.sop_class_uid == _ENHANCED_CT_SOP or h.frames > 1):
        kinds.append(("enhanced", f"multi-frame CT ({h.frames} frames) without readable "
                      "per-frame functional groups; export as classic single-frame CT images"))
    elif "LOCALIZER" in it:
        kinds.append(("localizer", "localizer (scout) image"))
    elif h.orientation is not None:
        normal = np.cross(h.orientation[:3], h.orientation[3:])
        if abs(normal[2]) < 0.8:  # more than ~37 deg from axial: coronal/sagittal reformat
            kinds.append(("not-axial", "not axial (coronal or sagittal reformat)"))
    if kinds:
        s.exclusion_kind, s.excluded = kinds[0]
    pos = [np.asarray(x.position) for x in s.headers if x.position is not None]
    if len(pos) > 1 and h.orientation is not None:
        normal = np.cross(h.orientation[:3], h.orientation[3:])
        along = np.array([p @ normal for p in pos])
        s.extent_mm = float(along.max() - along.min())


def discover_series(path: str | os.PathLike[str], *, strict: bool = False) -> Discovery:
    """Walk ``path`` and return every DICOM series found, classified.

    Parameters
    ----------
    path : str or os.PathLike
        A folder (searched recursively) or one DICOM file.
    strict : bool
        Raise on the first unreadable file instead of skipping it (used for single files).

    Returns
    -------
    Discovery
        Series sorted by SeriesNumber; candidates have ``excluded == ""``; the preferred one has
        ``chosen`` set (see :func:`choose_series`).

    Raises
    ------
    InvalidInputError
        The path does not exist.
    """
    root = os.fspath(path)
    if not os.path.exists(root):
        raise InvalidInputError("no such file or folder", source=root)
    disc = Discovery(root=root, series=[])
    headers = _read_all(iter_files(root), disc, strict=strict)
    disc.series = _group(headers)
    for s in disc.series:
        _classify(s)
    # One choice per study: the series load_scan takes from that study's folder.
    studies: dict[str, list[SeriesInfo]] = {}
    for s in disc.series:
        studies.setdefault(s.first.study_uid, []).append(s)
    for group in studies.values():
        _rank(group)
    return disc


def _rank(series: list[SeriesInfo]) -> None:
    candidates = [s for s in series if not s.excluded]
    if not candidates:
        return

    def score(s: SeriesInfo) -> tuple:
        thick = s.first.slice_thickness_mm or 99.0
        return (-min(s.extent_mm, LUNG_COVERAGE_MM), thick, -s.n_positions)

    candidates.sort(key=score)
    best = candidates[0]
    best.chosen = True
    thick = best.first.slice_thickness_mm
    facts = (f"CT {'/'.join(best.first.image_type[:3]) or 'image'}, {best.n_positions} "
             f"slices, {best.extent_mm:.0f} mm coverage"
             + (f", {thick:g} mm thick" if thick else ""))
    if len(candidates) == 1:
        best.reason = f"chosen: {facts}; the only candidate of its study"
    else:
        best.reason = (f"chosen: {facts}; best coverage, then thinnest of the "
                       f"{len(candidates)} of its study")
        for s in candidates[1:]:
            s.reason = "candidate: less coverage or thicker slices than the chosen series"


def _refuse_several_scans(disc: Discovery) -> None:
    """Several patients or studies with a CT series under one path: which one is meant?

    Loading one of them silently (the old behaviour, with a warning) gave a result for a
    patient the caller may not have meant. The message lists the candidates by series UID
    (what ``series_uid=`` takes) and slice count, never by patient identifiers.
    """
    candidates = [s for s in disc.series if not s.excluded]
    studies = {s.first.study_uid for s in candidates if s.first.study_uid}
    patients = {s.first.patient_id for s in candidates if s.first.patient_id}
    if len(studies) <= 1 and len(patients) <= 1:
        return
    shown = "; ".join(f"{s.key} ({s.n_positions} slices"
                      + (f", {s.first.series_description}" if s.first.series_description
                         else "") + ")" for s in candidates[:6])
    more = f"; and {len(candidates) - 6} more" if len(candidates) > 6 else ""
    raise AmbiguousInputError(
        f"{len(patients) or 'unknown'} patient(s) and {len(studies)} studies with a CT series "
        "here; load_scan loads one scan: give the folder of one study, or one series_uid of: "
        f"{shown}{more} (`lesionquant series` lists them; `lesionquant run` quantifies them "
        "all)", source=disc.root)


def choose_series(disc: Discovery, series_uid: str | None = None) -> tuple[SeriesInfo, list[str]]:
    """The series to load, honouring a forced UID; with warnings.

    Within one study the best CT series is taken (coverage, then thinnest slices). A path
    holding several patients or studies is refused unless ``series_uid`` picks one.

    Raises
    ------
    AmbiguousInputError
        Several patients or studies have a CT series under the path and no ``series_uid``
        was given (the message lists the candidate series).
    NoSeriesError
        No DICOM images at all, or the requested UID is absent.
    UnsupportedDicomError
        DICOM images exist but none is a loadable CT series (the message lists why), or the
        forced series is of a refused kind (SEG, derived, secondary capture, non-CT).
    """
    warns: list[str] = []
    if disc.skipped_special:
        warns.append(f"{disc.root}: {len(disc.skipped_special)} entr(y/ies) that are not "
                     f"regular files (named pipe, socket, device) not opened, e.g. "
                     f"{os.path.basename(disc.skipped_special[0])}")
    if not disc.series:
        detail = (f"{disc.skipped_non_dicom} non-DICOM file(s), {disc.skipped_index} index "
                  f"file(s), {len(disc.suspects)} unreadable file(s) that look like slices")
        if disc.suspects:
            first = next(iter(disc.suspects))
            detail += f", e.g. {first}: {disc.suspects[first]}"
        raise NoSeriesError(f"no DICOM image series found ({detail})", source=disc.root)
    if series_uid is not None:
        matches = [s for s in disc.series if series_uid in (s.key, s.series_uid)]
        if not matches:
            known = ", ".join(s.key for s in disc.series)
            raise NoSeriesError(f"series {series_uid} not found (found: {known})",
                                source=disc.root)
        loadable = [s for s in matches if s.exclusion_kind not in _REFUSED_KINDS]
        if not loadable:
            s = matches[0]
            raise UnsupportedDicomError(f"series {series_uid} refused: {s.excluded}",
                                        source=disc.root)
        pick = next((s for s in loadable if s.chosen), loadable[0])
        if pick.excluded:
            warns.append(f"{disc.root}: series {pick.short_uid} forced by UID although "
                         f"{pick.excluded}")
        return pick, warns
    _refuse_several_scans(disc)
    chosen = [s for s in disc.series if s.chosen]
    if not chosen:
        reasons = "; ".join(f"{s.short_uid}: {s.excluded}" for s in disc.series)
        if all(s.exclusion_kind in _REFUSED_KINDS for s in disc.series):
            raise UnsupportedDicomError(f"no CT series to quantify ({reasons})",
                                        source=disc.root)
        raise NoSeriesError(f"no CT series to quantify ({reasons}); force one with series_uid",
                            source=disc.root)
    return chosen[0], warns
