"""Pseudonyms: stable per salt, different across salts, salt file private and reused."""

from __future__ import annotations

import stat

import pytest

from lesionquant.batch._pseudonym import SALT_ENV, load_or_create_salt, pseudonym
from lesionquant.errors import OutputExistsError


def test_pseudonym_is_stable_keyed_and_safe_as_a_folder_name():
    a = pseudonym("P", "12345", "salt-1")
    assert a == pseudonym("P", "12345", "salt-1")
    assert a != pseudonym("P", "12345", "salt-2")
    assert a != pseudonym("S", "12345", "salt-1")  # kinds do not collide
    assert a != pseudonym("P", "12346", "salt-1")
    assert a.startswith("P-") and len(a) == 14 and a[2:].isalnum() and "12345" not in a
    with pytest.raises(ValueError):
        pseudonym("P", "", "salt")


def test_salt_created_once_private_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(SALT_ENV, raising=False)
    salt = load_or_create_salt(tmp_path)
    path = tmp_path / ".salt"
    assert len(salt) == 64 and path.read_text().strip() == salt
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_salt(tmp_path) == salt
    assert load_or_create_salt(tmp_path / "other") != salt  # a new folder, a new random salt


def test_external_salt_is_not_stored_but_must_be_given_again(tmp_path, monkeypatch):
    monkeypatch.setenv(SALT_ENV, "from-env")
    assert load_or_create_salt(tmp_path) == "from-env"
    assert not (tmp_path / ".salt").exists()  # an external salt is not written down
    assert "from-env" not in (tmp_path / ".salt-id").read_text()
    assert load_or_create_salt(tmp_path, "from-env") == "from-env"
    with pytest.raises(OutputExistsError, match="another pseudonym salt"):
        load_or_create_salt(tmp_path, "from-flag")
    monkeypatch.delenv(SALT_ENV)
    with pytest.raises(OutputExistsError, match="external salt"):
        load_or_create_salt(tmp_path)


def test_a_stored_salt_cannot_be_swapped(tmp_path, monkeypatch):
    monkeypatch.delenv(SALT_ENV, raising=False)
    load_or_create_salt(tmp_path)
    with pytest.raises(OutputExistsError, match="another pseudonym salt"):
        load_or_create_salt(tmp_path, "different")
