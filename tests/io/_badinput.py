"""A seeded corpus of bad inputs for the loader, and the tally of what the loader makes of it.

Each variant is a small broken copy of one clean series (or a broken single file / input path):
lost slices (empty, short, dangling or looping link, cut header, cut pixel data, deleted
slices), unrelated files next to the slices, pixel data whose length does not match the
header, implausible or non-numeric spacing and rescale values, named pipes and symlink loops
as inputs, and the fuzz families of ``test_io_fuzz.py`` (regression inputs, structured header
values, cut and byte-flipped files), drawn with a seeded generator.

Outcomes:

* ``error``: a typed ``LesionQuantError`` with a one-line message naming the file (or, for
  gaps, the positions);
* ``equal``: loaded, voxels and geometry equal to the clean input's;
* ``differs-warned`` / ``differs``: loaded with other voxels or geometry, with or without a
  warning saying what was assumed (only the fuzz families can: a flipped byte inside pixel
  data, or a plausible header digit changed, cannot be detected without a checksum, which
  DICOM does not have);
* ``untyped`` / ``timeout``: a bug (the test fails).

Used by ``tests/io/test_io_badinput.py`` and ``bench/badinput_tally.py`` (which prints the
table of ``docs/loader.md``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from _dicomgen import write_series
from test_io_fuzz import FIELDS, REGRESSIONS, SEED, _structured  # the fuzz cases, reused

from lesionquant import load_scan
from lesionquant.errors import LesionQuantError

TIMEOUT_S = 10


@dataclass
class Variant:
    kind: str
    name: str
    path: Path
    expect: str  # "error", "equal" or "any" (fuzz families: typed error or load)
    culprit: str = ""  # text the error must contain (file name or "mm gap")
    clean: Path | None = None  # what an "equal" load is compared with
    allow: str = ""  # with allow_incomplete=True: "equal-warn" (repaired + warning) or "error"


@dataclass
class Outcome:
    variant: Variant
    result: str  # error | equal | differs | untyped | timeout
    detail: str = ""
    allowed: str = ""  # the outcome with allow_incomplete=True, when the variant has one
    warnings: tuple[str, ...] = field(default=())


def phantom(nz: int = 8, ny: int = 24, nx: int = 20) -> np.ndarray:
    """Air, a soft-tissue block and a lung-density core, distinct per slice (HU)."""
    hu = np.full((nz, ny, nx), -1000, dtype=np.int16)
    hu[:, 4:-4, 3:-3] = 40
    hu[:, 8:-8, 6:-6] = -850
    # Slices differ, and not linearly along z, so an interpolated slice never equals the lost one.
    hu += (np.arange(nz, dtype=np.int16) ** 2 % 7 * 5)[:, None, None]
    return hu


def _sorted_slices(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.name.startswith("img")]
    return sorted(files, key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True)
                                             .ImagePositionPatient[2]))


def _edit(path: Path, **values: object) -> None:
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, value in values.items():
            setattr(ds, key, value)
        ds.save_as(path, enforce_file_format=True)


def _set_text(path: Path, keyword: str, text: str) -> None:
    """Write ``text`` verbatim as the value of a DS attribute (what a broken exporter does;
    pydicom refuses such values on assignment, so the element is written raw)."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import RawDataElement

    ds = pydicom.dcmread(path)
    tag = pydicom.tag.Tag(tag_for_keyword(keyword))
    raw = text.encode("ascii")
    raw += b" " * (len(raw) % 2)
    ds._dict[tag] = RawDataElement(tag, "DS", len(raw), raw, 0, False, True)
    ds.save_as(path, enforce_file_format=True)


def _series(root: Path, name: str, **kw: object) -> Path:
    folder = root / name
    write_series(folder, phantom(), spacing_mm=(0.8, 0.8, 2.0), series_uid=None, **kw)
    return folder


def build_corpus(root: Path, seed: int = 22) -> list[Variant]:
    """Write every variant under ``root``; return them (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    clean = _series(root, "clean")
    out: list[Variant] = []

    def series_variant(kind: str, name: str, expect: str, change: Callable[[Path], str],
                       allow: str = "") -> None:
        folder = _series(root, name)
        culprit = change(folder)
        out.append(Variant(kind, name, folder, expect, culprit, clean, allow))

    def pick(folder: Path) -> Path:
        slices = _sorted_slices(folder)
        return slices[int(rng.integers(1, len(slices) - 1))]  # a middle slice

    # -- lost slices: refused by default, repaired with a warning when allowed
    def empty(folder: Path) -> str:
        f = pick(folder)
        f.write_bytes(b"")
        return f.name

    def short(folder: Path) -> str:
        f = pick(folder)
        f.write_bytes(f.read_bytes()[: int(rng.integers(1, 132))])
        return f.name

    def dangling(folder: Path) -> str:
        f = pick(folder)
        f.unlink()
        f.symlink_to(folder / "does-not-exist")
        return f.name

    def loop(folder: Path) -> str:
        f = pick(folder)
        f.unlink()
        f.symlink_to(f.name)  # points at itself
        return f.name

    def cut_header(folder: Path) -> str:
        f = pick(folder)
        f.write_bytes(f.read_bytes()[: int(rng.integers(200, 600))])
        return f.name

    def cut_pixels(folder: Path) -> str:
        f = pick(folder)
        f.write_bytes(f.read_bytes()[: -int(rng.integers(2, 400))])
        return f.name

    def delete(n: int) -> Callable[[Path], str]:
        def go(folder: Path) -> str:
            slices = _sorted_slices(folder)
            k = int(rng.integers(1, len(slices) - n))
            for f in slices[k:k + n]:
                f.unlink()
            return "mm gap between slices at" if n < 3 else "missing slices: gap"
        return go

    def stray_empty(folder: Path) -> str:
        (folder / "img9999").write_bytes(b"")
        return "img9999"

    lost = [("empty slice file", empty), ("slice file under 132 bytes", short),
            ("dangling link in place of a slice", dangling),
            ("symlink loop in place of a slice", loop),
            ("slice with a cut header", cut_header),
            ("slice with cut pixel data", cut_pixels),
            ("extra empty file named like a slice", stray_empty)]
    for i, (kind, change) in enumerate(lost):
        series_variant(kind, f"lost{i}", "error", change,
                       allow="equal-warn" if change is stray_empty else "warn")
    series_variant("1 middle slice missing", "gap1", "error", delete(1), allow="warn")
    series_variant("2 adjacent slices missing", "gap2", "error", delete(2), allow="warn")
    series_variant("4 adjacent slices missing", "gap4", "error", delete(4), allow="error")

    # -- unrelated files beside the series: loaded as the clean series
    def add(name: str, data: bytes) -> Callable[[Path], str]:
        def go(folder: Path) -> str:
            (folder / name).write_bytes(data)
            return ""
        return go

    def fifo(folder: Path) -> str:
        os.mkfifo(folder / "pipe")
        return ""

    unrelated = [("README.txt", add("README.txt", b"exported by PACS\n")),
                 ("metadata .json", add("meta.json", b"{}")),
                 ("DICOMDIR index", add("DICOMDIR", bytes(rng.integers(0, 256, 300, np.uint8)))),
                 ("Philips DIRFILE", add("DIRFILE", b"\x00" * 40)),
                 ("thumbnail .jpg", add("thumb.jpg", b"\xff\xd8\xff" + b"\x00" * 20)),
                 ("large non-DICOM file", add("LOG0001", bytes(rng.integers(1, 256, 4000,
                                                                            np.uint8)))),
                 ("named pipe beside the slices", fifo)]
    for i, (kind, change) in enumerate(unrelated):
        series_variant(f"unrelated: {kind}", f"unrel{i}", "equal", change)

    # -- pixel data length vs header
    def header_size(**values: object) -> Callable[[Path], str]:
        def go(folder: Path) -> str:
            f = pick(folder)
            _edit(f, **values)
            return f.name
        return go

    def every_file(**values: object) -> Callable[[Path], str]:
        def go(folder: Path) -> str:
            for f in folder.iterdir():
                _edit(f, **values)
            return "pixel data"
        return go

    # written into every file, as a broken exporter does (one odd file would only split the
    # series by image size, and the rest would have a gap: refused as such)
    series_variant("pixel data longer than declared (Columns halved)", "len0", "error",
                   every_file(Columns=10))
    series_variant("pixel data shorter than declared (Rows + 1)", "len1", "error",
                   every_file(Rows=25))
    series_variant("pixel data longer than declared (BitsAllocated 8)", "len2", "error",
                   every_file(BitsAllocated=8, BitsStored=8, HighBit=7))
    series_variant("one slice declares other Columns", "len3", "error",
                   header_size(Columns=10))
    out[-1].culprit = "mm gap between slices at"

    # -- implausible or non-numeric values
    def every_slice(keyword: str, value: object, text: bool = False) -> Callable[[Path], str]:
        def go(folder: Path) -> str:
            for f in folder.iterdir():
                _set_text(f, keyword, str(value)) if text else _edit(f, **{keyword: value})
            return keyword
        return go

    def one_slice(keyword: str, value: object, text: bool = False) -> Callable[[Path], str]:
        def go(folder: Path) -> str:
            f = pick(folder)
            _set_text(f, keyword, str(value)) if text else _edit(f, **{keyword: value})
            return f.name
        return go

    values = [
        ("PixelSpacing 1000 mm", every_slice("PixelSpacing", [1000, 1000]), "PixelSpacing"),
        ("PixelSpacing 0.001 mm", every_slice("PixelSpacing", [0.001, 0.001]), "PixelSpacing"),
        ("PixelSpacing text", every_slice("PixelSpacing", "abc\\def", text=True), ""),
        ("PixelSpacing NaN", every_slice("PixelSpacing", "nan\\nan", text=True), ""),
        ("SliceThickness text", every_slice("SliceThickness", "thick", text=True), ""),
        ("SliceThickness 500 mm", every_slice("SliceThickness", 500), "SliceThickness"),
        ("RescaleSlope NaN", one_slice("RescaleSlope", "NaN", text=True), ""),
        ("RescaleSlope text", one_slice("RescaleSlope", "one", text=True), ""),
        ("RescaleSlope 1e6", one_slice("RescaleSlope", 1e6), ""),
        ("RescaleIntercept text", one_slice("RescaleIntercept", "-1024HU", text=True), ""),
        ("RescaleIntercept inf", one_slice("RescaleIntercept", "inf", text=True), ""),
        ("RescaleIntercept 1e9", one_slice("RescaleIntercept", 1e9), ""),
    ]
    for i, (kind, change, culprit) in enumerate(values):
        series_variant(kind, f"value{i}", "error", change)
        if culprit:
            out[-1].culprit = culprit

    def spread(folder: Path) -> str:  # slices 50 mm apart
        for f in folder.iterdir():
            ds = pydicom.dcmread(f)
            pos = [float(v) for v in ds.ImagePositionPatient]
            _edit(f, ImagePositionPatient=[pos[0], pos[1], pos[2] * 25])
        return "slice spacing"

    series_variant("slice spacing 50 mm", "spread", "error", spread)

    # -- the input path itself
    fifo_in = root / "input-fifo"
    os.mkfifo(fifo_in)
    out.append(Variant("input: a named pipe", "in-fifo", fifo_in, "error", "input-fifo"))
    loop_in = root / "input-loop"
    loop_in.symlink_to(loop_in.name)
    out.append(Variant("input: a symlink loop", "in-loop", loop_in, "error", "input-loop"))
    dangling_in = root / "input-dangling"
    dangling_in.symlink_to(root / "nowhere")
    out.append(Variant("input: a dangling link", "in-dangling", dangling_in, "error",
                       "input-dangling"))
    empty_in = root / "input-empty"
    empty_in.mkdir()
    out.append(Variant("input: an empty folder", "in-empty", empty_in, "error", "input-empty"))

    # -- the fuzz families of test_io_fuzz.py, seeded
    seed_file = root / "fuzz-seed" / "f.dcm"
    seed_file.parent.mkdir()
    seed_file.write_bytes(SEED)

    def fuzz_file(kind: str, name: str, data: bytes, base: Path = seed_file) -> None:
        folder = root / name
        folder.mkdir()
        (folder / "f.dcm").write_bytes(data)
        out.append(Variant(kind, name, folder / "f.dcm", "any", "f.dcm", base))

    structured_base = root / "fuzz-structured-base" / "f.dcm"
    structured_base.parent.mkdir()
    structured_base.write_bytes(_structured({}))
    for i, data in enumerate(REGRESSIONS):
        fuzz_file("fuzz: regression header values", f"fuzzreg{i}", _structured(data),
                  structured_base)
    pools = _value_pools(rng)
    keys = sorted(FIELDS)
    for i in range(16):
        chosen = rng.choice(keys, size=int(rng.integers(1, 4)), replace=False)
        data = {k: pools[k][int(rng.integers(len(pools[k])))] for k in chosen}
        fuzz_file("fuzz: structured header values", f"fuzzhdr{i}", _structured(data),
                  structured_base)
    for i in range(16):
        cut = int(rng.integers(0, len(SEED)))
        fuzz_file("fuzz: file cut short", f"fuzzcut{i}", SEED[:cut])
    for i in range(16):
        data = bytearray(SEED)
        for _ in range(int(rng.integers(1, 9))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        fuzz_file("fuzz: bytes flipped", f"fuzzflip{i}", bytes(data))
    return out


def _value_pools(rng: np.random.Generator) -> dict[str, list[object]]:
    """A few values per fuzzed header field, in the spirit of ``test_io_fuzz.FIELDS``."""
    text = ["", "abc", "nan", "inf", "-inf", "1e400", "0", "-1", "2147483648", " 1.5 "]
    return {
        "Rows": [0, 1, 8, 9, 70000], "Columns": [0, 1, 8, 7, 70000],
        "BitsAllocated": [0, 1, 8, 12, 16, 32, 64], "BitsStored": [0, 8, 12, 17, 40],
        "HighBit": [0, 7, 15, 40], "PixelRepresentation": [0, 1, 3],
        "SamplesPerPixel": [0, 1, 3], "NumberOfFrames": text,
        "RescaleSlope": text, "RescaleIntercept": text, "SliceThickness": text,
        "PixelSpacing": [[], ["1"], ["0", "0"], ["nan", "1"], ["1", "1", "1"], ["-1", "2"]],
        "ImagePositionPatient": [[], ["1", "2"], ["nan", "0", "0"], ["a", "b", "c"]],
        "ImageOrientationPatient": [[], ["1", "0", "0", "0", "1"], ["0"] * 6,
                                    ["1", "0", "0", "1", "0", "0"]],
        "ImageType": [[], ["DERIVED", "SECONDARY"], ["ORIGINAL", "PRIMARY", "LOCALIZER"]],
        "Modality": ["", "MR", "CT", "OT"],
        "PixelPaddingValue": [int(v) for v in rng.integers(0, 65536, 3)],
    }


class Hang(BaseException):
    """The load did not answer in time. A BaseException, so that no ``except Exception``
    inside the loader can turn the alarm into a typed error (a slow load on a busy
    machine would then change the tally instead of failing as a hang)."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` after ``seconds`` (SIGALRM interrupts a blocking open())."""

    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _load(path: Path, allow: bool) -> tuple[str, str, object]:
    try:
        with _time_limit(TIMEOUT_S), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return "loaded", "", load_scan(path, allow_incomplete=allow)
    except Hang as exc:
        return "timeout", str(exc), None
    except LesionQuantError as exc:
        return "error", str(exc), None
    except Exception as exc:  # a bug: reported, the test fails
        return "untyped", f"{type(exc).__name__}: {exc}", None


def _same(a: object, b: object) -> bool:
    ia, ib = a.image, b.image  # type: ignore[attr-defined]
    return (ia.GetSize() == ib.GetSize()
            and np.allclose(ia.GetSpacing(), ib.GetSpacing(), atol=1e-6)
            and np.allclose(ia.GetOrigin(), ib.GetOrigin(), atol=1e-6)
            and np.allclose(ia.GetDirection(), ib.GetDirection(), atol=1e-9)
            and np.array_equal(sitk.GetArrayViewFromImage(ia), sitk.GetArrayViewFromImage(ib)))


def run_variant(v: Variant, clean_scans: dict[Path, object]) -> Outcome:
    """Load one variant (and, for lost slices, once more with ``allow_incomplete``)."""
    status, detail, scan = _load(v.path, allow=False)
    warns: tuple[str, ...] = ()
    if status == "loaded":
        warns = tuple(scan.warnings)  # type: ignore[attr-defined]
        ref = clean_scans.get(v.clean) if v.clean else None
        if ref is not None and _same(scan, ref):
            status = "equal"
        else:  # warned: a warning beyond the usual single-slice note says what was assumed
            warned = any("single slice;" not in w for w in warns)
            status = "differs-warned" if warned else "differs"
    allowed = ""
    if v.allow:
        a_status, _, a_scan = _load(v.path, allow=True)
        if a_status == "loaded":
            a_warns = a_scan.warnings  # type: ignore[attr-defined]
            tagged = any(w.startswith("incomplete series:") for w in a_warns)
            same = _same(a_scan, clean_scans[v.clean]) if v.clean else False
            allowed = ("equal-warn" if same and tagged else "warn" if tagged
                       else "loaded-silently")
        else:
            allowed = a_status
    return Outcome(v, status, detail, allowed, warns)


def run_corpus(root: Path, seed: int = 22) -> list[Outcome]:
    variants = build_corpus(root, seed)
    clean_scans: dict[Path, object] = {}
    for v in variants:
        if v.clean is not None and v.clean not in clean_scans:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clean_scans[v.clean] = load_scan(v.clean)
    return [run_variant(v, clean_scans) for v in variants]


def problems(o: Outcome) -> list[str]:
    """What is wrong with an outcome (empty when it is as required)."""
    v = o.variant
    found = []
    if o.result in ("untyped", "timeout"):
        found.append(f"{o.result}: {o.detail}")
    if o.result == "error":
        if "\n" in o.detail:
            found.append("message is not one line")
        if v.culprit and v.culprit not in o.detail:
            found.append(f"message does not name {v.culprit!r}: {o.detail}")
    if v.expect == "error" and o.result != "error":
        found.append(f"expected a typed error, got {o.result}")
    if v.expect == "equal" and o.result != "equal":
        found.append(f"expected a load equal to the clean series, got {o.result}: {o.detail}")
    if v.allow and o.allowed != v.allow:
        found.append(f"with allow_incomplete expected {v.allow}, got {o.allowed}")
    return found


def tally(outcomes: list[Outcome]) -> str:
    """The markdown table of ``docs/loader.md``: kinds, counts, outcomes."""
    rows: dict[str, dict[str, int]] = {}
    for o in outcomes:
        r = rows.setdefault(o.variant.kind, {"n": 0, "error": 0, "equal": 0, "differs": 0,
                                             "differs-warned": 0, "bug": 0, "allowed": 0})
        r["n"] += 1
        r[o.result if o.result in r else "bug"] += 1
        if o.allowed in ("equal-warn", "warn"):
            r["allowed"] += 1
    lines = ["| kind | variants | typed error | loaded = clean | loaded, differs, with a "
             "warning | loaded, differs, no warning | untyped or hang | allow_incomplete: "
             "loaded with warning |", "|---|---|---|---|---|---|---|---|"]
    total = dict.fromkeys(("n", "error", "equal", "differs-warned", "differs", "bug",
                           "allowed"), 0)
    for kind, r in rows.items():
        lines.append(f"| {kind} | {r['n']} | {r['error']} | {r['equal']} | "
                     f"{r['differs-warned']} | {r['differs']} | {r['bug']} | "
                     f"{r['allowed'] or ''} |")
        for k in total:
            total[k] += r[k]
    lines.append("| **all** | " + " | ".join(str(total[k]) for k in total) + " |")
    return "\n".join(lines)
