"""Radiologist QA: overlays (PNG montage), self-contained HTML reports, a local viewer.

* :func:`render_montage` - one PNG per scan: axial slices through the lungs, a coronal
  and two sagittal reformats, lung window, lung contour, GGO / consolidation fills.
* :func:`write_scan_qa` - ``overlay.png`` and ``report.html`` in a scan's output folder.
* :func:`write_index` - ``OUT/index.html``: the cohort's change from baseline, each patient's
  trajectory and visits, every scan with its numbers and QA status.
* :func:`update_report_patient_sections` - patient, study date, visit day and trajectory in
  every ``report.html`` (called by the batch when all visits are known).
* :func:`load_verdicts` / :func:`save_verdict` - reader verdicts in ``OUT/verdicts.json``.
* :func:`serve_review` - the local review page (``lesionquant review OUT``).

Derived and secondary-capture images are never rendered; images carry the pseudonymous
scan id only. See ``docs/qa.md``.
"""

from __future__ import annotations

from lesionquant.qa._overlays import MONTAGE_SIZE_PX, Montage, Panel, render_montage
from lesionquant.qa._patients import update_report_patient_sections
from lesionquant.qa._report import write_index, write_scan_qa
from lesionquant.qa._verdicts import Verdict, load_verdicts, save_verdict
from lesionquant.qa.review import ReviewServer, serve_review

__all__ = [
    "MONTAGE_SIZE_PX",
    "Montage",
    "Panel",
    "ReviewServer",
    "Verdict",
    "load_verdicts",
    "render_montage",
    "save_verdict",
    "serve_review",
    "update_report_patient_sections",
    "write_index",
    "write_scan_qa",
]
