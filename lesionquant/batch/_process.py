"""One job, run inside a worker process: quantify a scan and commit its output folder.

Everything of a scan is written into ``OUT/.tmp-<scan_id>-<pid>-<token>/`` and committed
with one rename (see :mod:`lesionquant.batch._outputs`). The worker returns a small summary
dict to the parent; failures come back as ``{"status": "failed", "reason": ...}``, never as
exceptions, so one bad scan cannot stop the batch.

What a worker process needs for every scan (the settings object, the pipeline's modules, a
model once one ships) is loaded once per process by :func:`worker_settings` /
:func:`warm_up`, not per scan.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import secrets
import shutil
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionquant._deid import identifying_texts, scrub
from lesionquant.batch import _outputs
from lesionquant.batch._jobs import Job
from lesionquant.batch._pseudonym import pseudonym

__all__ = ["RunContext", "build_record", "process_job", "warm_up", "worker_settings"]

logger = logging.getLogger(__name__)

SCHEMA = "lesionquant.result/1"
LABELS_NII = "labels.nii.gz"
SEG_DCM = "seg.dcm"


@dataclass(frozen=True)
class RunContext:
    """What every worker needs to know about the batch (picklable).

    Attributes
    ----------
    out_dir : str
        The output folder ``OUT``.
    settings : dict
        ``Settings.to_dict()`` of the run.
    salt : str
        Pseudonym salt.
    keep_identifiers : bool
        Write real patient identifiers and source paths (``--keep-identifiers``).
    run_id : str
        Unique id of this batch invocation (stored in every result).
    parent_pid : int
        PID of the batch process; a worker whose parent died commits nothing.
    seg : bool
        Write ``seg.dcm`` for DICOM inputs.
    qa_hooks : tuple of callables or None
        ``hook(result, folder, scan_id=...)`` writing per-scan QA files into the scan's
        temporary folder before the commit. ``None``: ``lesionquant.qa.write_scan_qa`` when the
        QA module is installed.
    allow_incomplete : bool
        Quantify series with lost slices anyway (``--allow-incomplete-series``); each gap
        is an ``incomplete series:`` warning in the result.
    compute : callable, optional
        Private test hook replacing load + quantify: ``compute(job, settings) -> Result``.
    """

    out_dir: str
    settings: dict[str, Any]
    salt: str
    keep_identifiers: bool = False
    run_id: str = ""
    parent_pid: int = 0
    seg: bool = True
    qa_hooks: tuple[Callable[..., Any], ...] | None = None
    allow_incomplete: bool = False
    compute: Callable[[Job, Any], Any] | None = field(default=None, repr=False)


def process_job(job: Job, ctx: RunContext) -> dict[str, Any]:
    """Quantify one job and commit ``OUT/<scan_id>/``; return a summary (never raises).

    Returns
    -------
    dict
        ``{"scan_id", "status": "done" | "failed", "reason", "seconds"}``.
    """
    from lesionquant.errors import LesionQuantError

    t0 = time.perf_counter()
    out_dir = Path(ctx.out_dir)
    tmp = out_dir / f".tmp-{job.scan_id}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        record = _run(job, ctx, tmp)
        if ctx.parent_pid and os.getppid() != ctx.parent_pid:
            raise RuntimeError("the batch process has died; result not committed")
        owner = _outputs.lock_owner(out_dir)
        if ctx.run_id and owner not in (None, ctx.run_id):
            raise RuntimeError("another batch has taken over the output folder since this "
                               "scan was sent; result not committed")
        _outputs.commit_scan_dir(out_dir, job.scan_id, tmp)
        return {"scan_id": job.scan_id, "status": "done", "reason": "",
                "seconds": time.perf_counter() - t0, "warnings": record["warnings"]}
    except LesionQuantError as exc:
        reason = str(exc)
    except Exception as exc:  # a bug or a library failure: recorded, the batch goes on
        logger.debug("%s: %s", job.scan_id, traceback.format_exc())
        reason = f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    reason = " ".join(reason.split())
    return {"scan_id": job.scan_id, "status": "failed", "reason": reason,
            "seconds": time.perf_counter() - t0}


@functools.lru_cache(maxsize=4)
def _settings_from_json(text: str) -> Any:
    from lesionquant.settings import Settings

    return Settings.from_dict(json.loads(text))


def worker_settings(settings: Mapping[str, Any]) -> Any:
    """The :class:`~lesionquant.settings.Settings` of ``settings`` (``Settings.to_dict()``),
    built once per worker process and reused for every scan of the batch."""
    return _settings_from_json(json.dumps(settings, sort_keys=True, default=str))


def warm_up(settings: Mapping[str, Any]) -> None:
    """Load, once per worker process, what every scan needs: the pipeline's modules (SimpleITK,
    scikit-image, highdicom, the QA renderer) and the settings object; a Dask worker runs it
    when it starts (:mod:`lesionquant.batch._dask_worker`), so the first scan does not pay."""
    import importlib

    for name in ("lesionquant.api", "lesionquant.io", "lesionquant.segment",
                 "lesionquant.measure", "lesionquant.batch._seg", "lesionquant.qa"):
        try:
            importlib.import_module(name)
        except ImportError as exc:  # an optional part: the scan reports it if it needs it
            logger.debug("warm-up: %s not importable: %s", name, exc)
    worker_settings(settings)


def _default_qa_hooks() -> tuple[Callable[..., Any], ...]:
    try:
        from lesionquant import qa
    except ImportError:
        return ()
    hook = getattr(qa, "write_scan_qa", None)
    return (hook,) if callable(hook) else ()


def _run(job: Job, ctx: RunContext, tmp: Path) -> dict[str, Any]:
    import SimpleITK as sitk

    settings = worker_settings(ctx.settings)
    t0 = time.perf_counter()
    if ctx.compute is None:
        import lesionquant

        scan = lesionquant.load_scan(job.source, series_uid=job.series_uid,
                                     allow_incomplete=ctx.allow_incomplete)
        t_load = time.perf_counter() - t0
        result = lesionquant.quantify(scan, settings)
    else:
        t_load = 0.0
        result = ctx.compute(job, settings)
    t_compute = time.perf_counter() - t0
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()  # OUT itself must exist: never create it on a worker that cannot see it
    t1 = time.perf_counter()
    sitk.WriteImage(result.labelmap, str(tmp / LABELS_NII), True)
    outputs = {"labels": LABELS_NII, "seg": None}
    warnings: list[str] = []
    scan = result.scan
    if ctx.seg and scan.files:
        from lesionquant.batch._seg import write_seg

        try:
            write_seg(result.labelmap, scan.files, tmp / SEG_DCM,
                      patient_pseudonym=None if ctx.keep_identifiers
                      else _patient_pseudonym(job, scan, ctx.salt),
                      method=str(settings.method.value))
            outputs["seg"] = SEG_DCM
        except Exception as exc:  # SEG is an extra: its failure must not lose the numbers
            warnings.append(f"DICOM SEG not written: {type(exc).__name__}: {exc}")
            logger.warning("%s: DICOM SEG not written: %s", job.scan_id, exc)
    hooks = _default_qa_hooks() if ctx.qa_hooks is None else ctx.qa_hooks
    for hook in hooks:
        try:
            hook(result, tmp, scan_id=job.scan_id)
        except Exception as exc:  # QA pictures are extras too
            name = getattr(hook, "__name__", "qa")
            warnings.append(f"QA output ({name}) failed: {type(exc).__name__}: {exc}")
            logger.warning("%s: QA output (%s) failed: %s", job.scan_id, name, exc)
    timings = {"load_s": t_load, "quantify_s": t_compute - t_load,
               "outputs_s": time.perf_counter() - t1}
    record = build_record(job, result, ctx, warnings=warnings, timings=timings, outputs=outputs)
    _outputs.write_json_atomic(tmp / _outputs.RESULT_JSON, record)  # last: the marker
    return record


def _patient_pseudonym(job: Job, scan: Any, salt: str) -> str:
    pid = scan.identifiers.patient_id
    return pseudonym("P", pid, salt) if pid else pseudonym("P", job.key, salt)


def _iso_date(yyyymmdd: str) -> str:
    d = "".join(ch for ch in (yyyymmdd or "") if ch.isdigit())
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 else ""


def _iso_time(hhmmss: str) -> str:
    t = (hhmmss or "").split(".")[0]
    return f"{t[:2]}:{t[2:4]}:{t[4:6]}" if len(t) >= 6 and t.isdigit() else ""


def build_record(job: Job, result: Any, ctx: RunContext, *, warnings: list[str],
                 timings: Mapping[str, float], outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The content of ``result.json`` for one scan (see ``docs/batch.md``)."""
    from lesionquant import __version__

    scan = result.scan
    ident = scan.identifiers
    measures = dict(getattr(result, "measurements", None) or result.to_dict())
    provenance = _provenance_dict(getattr(result, "provenance", None))
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "scan_id": job.scan_id,
        "patient": _patient_pseudonym(job, scan, ctx.salt),
        "patient_known": bool(ident.patient_id),
        "study": pseudonym("ST", ident.study_uid or job.key, ctx.salt),
        "study_date": _iso_date(ident.study_date),
        "study_time": _iso_time(ident.study_time),
        "series_uid": ident.series_uid or job.series_uid or "",
        "acquisition": _acquisition(scan),
        "measures": measures,
        "provenance": {
            **provenance,
            "package_version": __version__,
            "settings": provenance.get("settings") or ctx.settings,
            "input_series_uid": ident.series_uid or job.series_uid or "",
            "loader_warnings": list(scan.warnings),
            "batch": {"run_id": ctx.run_id, "timings": dict(timings),
                      "keep_identifiers": ctx.keep_identifiers},
        },
        "outputs": dict(outputs),
        "warnings": list(warnings),
    }
    from lesionquant.batch._tables import scan_flags, scan_warnings

    record["flags"] = scan_flags(scan_warnings(record))
    if ctx.keep_identifiers:
        record["identifiers"] = {
            "patient_id": ident.patient_id, "patient_name": ident.patient_name,
            "accession": ident.accession, "study_uid": ident.study_uid,
            "source": str(Path(job.source).resolve()),
        }
        return record
    return _scrub(record, _secrets(job, scan))


def _provenance_dict(prov: Any) -> dict[str, Any]:
    if prov is None:
        return {}
    if dataclasses.is_dataclass(prov):
        return {f.name: getattr(prov, f.name) for f in dataclasses.fields(prov)}
    return dict(prov)


def _acquisition(scan: Any) -> dict[str, Any]:
    acq = getattr(scan, "acquisition", None)
    out = dataclasses.asdict(acq) if dataclasses.is_dataclass(acq) else {}
    out["size_xyz"] = list(scan.image.GetSize())
    out["spacing_mm"] = list(scan.image.GetSpacing())
    return out


def _secrets(job: Job, scan: Any) -> list[tuple[str, str]]:
    """(text, replacement) pairs that must not appear in pseudonymous outputs, longest first
    (the one rule of :mod:`lesionquant._deid`)."""
    return identifying_texts((job.source, str(scan.source)), scan.identifiers)


def _scrub(value: Any, pairs: list[tuple[str, str]]) -> Any:
    return scrub(value, pairs)
