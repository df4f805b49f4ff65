"""Stable, salted pseudonyms for patients, studies and scans.

A pseudonym is ``<prefix>-<12 hex digits>`` of an HMAC-SHA256 keyed with a secret salt, so the
same patient always gets the same pseudonym inside one output folder (visits stay linked)
while nobody without the salt can recompute it from a known patient ID. The salt is read, in
order, from the ``salt`` argument (``--salt``), the ``LESIONQUANT_SALT`` environment variable,
or ``OUT/.salt``; when none exists a random one is created in ``OUT/.salt`` (mode 0600).
Keep ``OUT/.salt`` private, and pass the same salt to every batch of a trial that writes to
different output folders, otherwise the pseudonyms will differ between folders.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from lesionquant.batch._outputs import write_text_atomic
from lesionquant.errors import OutputExistsError

__all__ = ["SALT_ENV", "load_or_create_salt", "pseudonym"]

logger = logging.getLogger(__name__)

#: Environment variable that may hold the salt.
SALT_ENV = "LESIONQUANT_SALT"
_SALT_FILE = ".salt"
_SALT_ID_FILE = ".salt-id"
_DIGITS = 12


def load_or_create_salt(out_dir: str | os.PathLike[str], salt: str | None = None) -> str:
    """Return the salt of an output folder, creating ``OUT/.salt`` on first use.

    The first salt used in a folder is fingerprinted in ``OUT/.salt-id`` (an HMAC of a fixed
    text, which does not reveal the salt); a later run with another salt is refused, because
    its pseudonyms would not link to the earlier results.

    Parameters
    ----------
    out_dir : path
        The batch output folder.
    salt : str, optional
        A user-provided salt (``--salt``). It wins over ``LESIONQUANT_SALT`` and ``OUT/.salt``.

    Returns
    -------
    str
        The salt (non-empty).

    Raises
    ------
    OutputExistsError
        The folder was written with another salt, or with an external salt that is not given
        now.
    """
    out = Path(out_dir)
    path, id_path = out / _SALT_FILE, out / _SALT_ID_FILE
    stored = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    chosen = salt or os.environ.get(SALT_ENV, "") or stored
    if not chosen:
        if id_path.is_file():
            raise OutputExistsError(f"this folder was written with an external salt; give the "
                                    f"same one again (--salt or {SALT_ENV})", source=out)
        chosen = secrets.token_hex(32)
        write_text_atomic(path, chosen + "\n", mode=0o600)
        logger.info("%s: created a new random salt", path)
    fingerprint = pseudonym("SALT", "lesionquant salt check", chosen)
    if id_path.is_file():
        if id_path.read_text(encoding="utf-8").strip() != fingerprint:
            raise OutputExistsError("this folder was written with another pseudonym salt; "
                                    "its scan and patient ids would not match (give the "
                                    "original salt, or use another output folder)", source=out)
    else:
        write_text_atomic(id_path, fingerprint + "\n")
    return chosen


def pseudonym(kind: str, value: str, salt: str) -> str:
    """Pseudonym of ``value`` in the namespace ``kind``.

    Parameters
    ----------
    kind : str
        Short prefix naming what is hashed (``"P"`` patient, ``"S"`` scan, ``"ST"`` study);
        part of the hashed message, so equal values of different kinds do not collide.
    value : str
        The identifier (patient ID, series UID, file path ...). Must not be empty.
    salt : str
        The secret salt.

    Returns
    -------
    str
        ``"<kind>-<12 lowercase hex digits>"``, safe as a folder name.

    Examples
    --------
    >>> pseudonym("P", "12345", "salt")
    'P-137fd4a00b83'
    >>> pseudonym("P", "12345", "salt") == pseudonym("P", "12345", "other salt")
    False
    """
    if not value:
        raise ValueError("pseudonym: empty value")
    mac = hmac.new(salt.encode("utf-8"), f"{kind}\0{value}".encode(), hashlib.sha256)
    return f"{kind}-{mac.hexdigest()[:_DIGITS]}"
