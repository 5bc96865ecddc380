"""Where the client finds its server and key: arguments > environment > the config file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from client import ConfigError, load_config, resolve_config, save_config
from client.config import DEFAULT_URL, config_path


def test_save_config_writes_an_owner_only_file_and_load_config_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "config.json"
    assert save_config("http://h:1/", "lbc_k", path) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": "http://h:1", "api_key": "lbc_k"}
    config = load_config(path)
    assert (config.url, config.api_key) == ("http://h:1", "lbc_k")
    assert config.key_source == f"config file {path}"

    path.chmod(0o644)
    save_config("http://h:2", "lbc_k2", path)  # rewritten atomically, owner-only again
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and load_config(path).url == "http://h:2"
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]


def test_a_missing_config_file_is_empty_and_a_malformed_one_an_error(tmp_path: Path) -> None:
    assert load_config(tmp_path / "none.json").url is None
    bad = tmp_path / "bad.json"
    for text in ("{", "[]", '{"url": 5}'):
        bad.write_text(text)
        with pytest.raises(ConfigError):
            load_config(bad)


def test_the_config_path_comes_from_lbc_config_then_xdg_then_home(tmp_path: Path) -> None:
    assert config_path({"LBC_CONFIG": str(tmp_path / "c.json")}) == tmp_path / "c.json"
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "lbc" / "config.json"
    assert config_path({}) == Path.home() / ".config" / "lbc" / "config.json"


def test_arguments_beat_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    file = tmp_path / "config.json"
    save_config("http://file:1", "file-key", file)
    env = {"LBC_CONFIG": str(file)}

    from_file = resolve_config(env=env)
    assert (from_file.url, from_file.api_key) == ("http://file:1", "file-key")

    env.update(LBC_URL="http://env:2", LBC_API_KEY="env-key")
    from_env = resolve_config(env=env)
    assert (from_env.url, from_env.api_key, from_env.url_source) == ("http://env:2", "env-key", "LBC_URL")

    explicit = resolve_config("http://arg:3/", "arg-key", env=env)
    assert (explicit.url, explicit.api_key, explicit.key_source) == ("http://arg:3", "arg-key", "--key")


def test_the_saved_key_is_never_sent_to_another_server(tmp_path: Path) -> None:
    file = tmp_path / "config.json"
    save_config("http://file:1", "file-key", file)
    env = {"LBC_CONFIG": str(file)}

    assert resolve_config("http://elsewhere:9", env=env).api_key is None
    assert resolve_config(env={**env, "LBC_URL": "http://elsewhere:9"}).api_key is None
    assert resolve_config("http://file:1/", env=env).api_key == "file-key"


def test_without_any_configuration_the_url_is_the_local_default(tmp_path: Path) -> None:
    config = resolve_config(env={"LBC_CONFIG": str(tmp_path / "none.json")})
    assert (config.url, config.api_key, config.url_source) == (DEFAULT_URL, None, "default")
