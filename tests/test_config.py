"""Settings from sanctum.toml and SANCTUM_* variables, and the refusals to start unsafely."""

from __future__ import annotations

import os

import pytest

from sanctum.config import ConfigError, TwoFactorPolicy, check_startable, load_settings
from sanctum.security.keys import KeyError_, create_master_key, load_master_key


def test_defaults_are_embedded(tmp_path, monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith("SANCTUM_"):
            monkeypatch.delenv(name)
    s = load_settings(tmp_path)
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'sanctum.db'}"
    assert s.resolved_master_key_file == tmp_path / "master.key"
    assert (s.host, s.port, s.require_2fa) == ("127.0.0.1", 8000, TwoFactorPolicy.OWNERS)


def test_toml_then_environment(tmp_path, monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith("SANCTUM_"):
            monkeypatch.delenv(name)
    (tmp_path / "sanctum.toml").write_text('port = 9000\nrequire_2fa = "all"\nhost = "127.0.0.2"\n')
    s = load_settings(tmp_path)
    assert (s.port, s.require_2fa, s.host) == (9000, TwoFactorPolicy.ALL, "127.0.0.2")
    monkeypatch.setenv("SANCTUM_PORT", "9100")
    assert load_settings(tmp_path).port == 9100
    assert load_settings(tmp_path, port=9200).port == 9200


def test_bad_setting_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SANCTUM_REQUIRE_2FA", "sometimes")
    with pytest.raises(ValueError, match="require_2fa"):
        load_settings(tmp_path)


def test_refuses_missing_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match="missing"):
        check_startable(load_settings(tmp_path))


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640])
def test_refuses_readable_key(tmp_path, mode) -> None:
    create_master_key(tmp_path / "master.key")
    os.chmod(tmp_path / "master.key", mode)
    with pytest.raises(ConfigError, match="0600") as err:
        check_startable(load_settings(tmp_path))
    assert "\n" not in str(err.value)


def test_refuses_public_address_without_tls(tmp_path) -> None:
    create_master_key(tmp_path / "master.key")
    with pytest.raises(ConfigError, match="without TLS"):
        check_startable(load_settings(tmp_path, host="0.0.0.0"))
    check_startable(load_settings(tmp_path, host="::1"))
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    check_startable(load_settings(tmp_path, host="0.0.0.0", tls_certfile=cert, tls_keyfile=key))


def test_master_key_is_created_private_and_checked(tmp_path) -> None:
    path = tmp_path / "k" / "master.key"
    create_master_key(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert len(load_master_key(path)) == 32
    with pytest.raises(FileExistsError):
        create_master_key(path)  # never overwritten
    path.write_text("not hex")
    with pytest.raises(KeyError_):
        load_master_key(path)
