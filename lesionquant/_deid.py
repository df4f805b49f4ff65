"""One de-identification rule for every shareable output (everything but ``errors.csv``).

Shareable outputs (``result.json``, ``results.csv``, ``endpoint.csv``, ``report.html``,
``index.html``, ``overlay.png``, ``labels.nii.gz``, ``seg.dcm``, the review server's JSON) never
hold an input path or a patient's name, ID or accession number:

* texts that come from the input (warnings, failure reasons, provenance) have every known
  identifying text replaced by a placeholder (:func:`identifying_texts`, :func:`scrub`): the
  input path as given and resolved, and the patient name, ID and accession number;
* failure reasons shown outside ``errors.csv`` additionally lose every remaining file-system
  path (:func:`public_reason`): folder and file names often carry the patient's name or MRN,
  and a failed input was never read far enough to know its identifiers;
* the DICOM SEG follows DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile
  with the Retain UIDs and Retain Longitudinal Temporal Information options
  (``lesionquant.batch._seg``).

``errors.csv`` (and ``OUT/.errors/``, from which it is rebuilt) is the one local file: it names
the input paths so that the input can be fixed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["identifying_texts", "public_reason", "scrub"]

INPUT = "<input>"
PATH = "<path>"
#: A file-system path inside a message: absolute POSIX (``/a/b``), home (``~/a``), Windows
#: (``C:\\a``, ``\\\\server``) or explicitly relative (``./a``), up to the next space, quote or
#: ``": "`` (the separator of lesionquant's one-line messages). Not after a word character,
#: so ``W/O`` or ``DERIVED/PRIMARY`` are not paths.
_PATH_RE = re.compile(r"""(?<![\w.<-])(?:[A-Za-z]:[\\/]|\\\\|~/|\.{1,2}/|/)"""
                      r"""(?:[^\s'"`:;,()\[\]<>]|:(?!\s))+""")


def _hide_paths(text: str) -> str:
    return _PATH_RE.sub(lambda m: "/" + PATH if text.endswith(INPUT, 0, m.start())
                        else PATH, text)


def _variants(source: str) -> set[str]:
    out = {source}
    try:
        out.add(str(Path(source).resolve()))
    except (OSError, RuntimeError):  # symlink loop
        pass
    out.add(str(Path(source).absolute()))
    return {s for s in out if len(s) > 1}


def identifying_texts(sources: Iterable[str] = (), identifiers: Any = None
                      ) -> list[tuple[str, str]]:
    """``(text, placeholder)`` pairs that must not reach a shareable output, longest first.

    Parameters
    ----------
    sources : iterable of str
        Input paths (as given; their resolved and absolute forms are added).
    identifiers : lesionquant.scan.Identifiers, optional
        Patient name, ID and accession number (values shorter than 3 characters are too
        unspecific to replace).
    """
    pairs: dict[str, str] = {}
    for source in sources:
        source = str(source or "")
        if source and not source.startswith("<"):
            for text in _variants(source):
                pairs[text] = INPUT
    for name, placeholder in (("patient_name", "<patient name>"),
                              ("patient_id", "<patient id>"), ("accession", "<accession>")):
        text = str(getattr(identifiers, name, "") or "")
        if len(text) >= 3:
            pairs.setdefault(text, placeholder)
            if "^" in text:  # DICOM PN components: "DOE^JOHN" is also shown as "DOE JOHN"
                for part in text.split("^"):
                    if len(part) >= 3:
                        pairs.setdefault(part, placeholder)
    return sorted(pairs.items(), key=lambda p: -len(p[0]))


def scrub(value: Any, pairs: list[tuple[str, str]]) -> Any:
    """``value`` (str, or nested lists / dicts of them) with each identifying text replaced
    and every file-system path hidden (a file inside the input becomes ``<input>/<path>``)."""
    if isinstance(value, str):
        for text, placeholder in pairs:
            value = value.replace(text, placeholder)
        return _hide_paths(value)
    if isinstance(value, Mapping):
        return {k: scrub(v, pairs) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, pairs) for v in value]
    return value


def public_reason(reason: str, sources: Iterable[str] = ()) -> str:
    """A failure reason fit for shareable outputs: the input as ``<input>``, other paths as
    ``<path>``.

    Examples
    --------
    >>> public_reason("/data/DOE_JOHN/ct: a file beside the series' slices looks like a lost "
    ...               "slice: /data/DOE_JOHN/ct/IM12: empty file", ["/data/DOE_JOHN/ct"])
    "<input>: a file beside the series' slices looks like a lost slice: <input>/<path>: empty file"
    >>> public_reason("missing slice(s): 4.00 mm gap between slices at 6.00 and 10.00 mm")
    'missing slice(s): 4.00 mm gap between slices at 6.00 and 10.00 mm'
    """
    return scrub(" ".join(str(reason).split()), identifying_texts(sources))
