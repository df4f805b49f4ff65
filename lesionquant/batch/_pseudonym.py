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

__all__ = ["SALT_ENV", "load_or_create_salt", "pseudonym"]

logger = logging.getLogger(__name__)

#: Environment variable that may hold the salt.
SALT_ENV = "LESIONQUANT_SALT"
_SALT_FILE = ".salt"
_DIGITS = 12


def load_or_create_salt(out_dir: str | os.PathLike[str], salt: str | None = None) -> str:
    """Return the salt of an output folder, creating ``OUT/.salt`` on first use.

    Parameters
    ----------
    out_dir : path
        The batch output folder.
    salt : str, optional
        A user-provided salt (``--salt``). It wins over ``LESIONQUANT_SALT`` and ``OUT/.salt``;
        when ``OUT/.salt`` holds a different salt a warning is logged (pseudonyms will not
        match the earlier results in the folder).

    Returns
    -------
    str
        The salt (non-empty).
    """
    path = Path(out_dir) / _SALT_FILE
    stored = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    given = salt if salt else os.environ.get(SALT_ENV, "")
    if given:
        if stored and stored != given:
            logger.warning("%s: the salt given differs from the one stored; pseudonyms of "
                           "earlier results in this folder will not match", path)
        return given
    if stored:
        return stored
    new = secrets.token_hex(32)
    write_text_atomic(path, new + "\n", mode=0o600)
    logger.info("%s: created a new random salt", path)
    return new


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
