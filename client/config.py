"""Where the client finds the server and its key: explicit arguments, then ``LBC_URL`` / ``LBC_API_KEY``,
then the config file that ``lbc serve`` and ``lbc login`` write (``~/.config/lbc/config.json``, or the
path in ``LBC_CONFIG``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from client.errors import ConfigError

URL_ENV = "LBC_URL"
KEY_ENV = "LBC_API_KEY"
CONFIG_ENV = "LBC_CONFIG"
DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Config:
    """A server URL and API key; ``url_source``/``key_source`` say where each came from (for messages)."""

    url: str | None = None
    api_key: str | None = None
    url_source: str | None = None
    key_source: str | None = None


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$LBC_CONFIG``, else ``$XDG_CONFIG_HOME/lbc/config.json``, else ``~/.config/lbc/config.json``."""
    env = os.environ if env is None else env
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "lbc" / "config.json"


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """The saved URL and key; an empty Config when the file does not exist. Raises ConfigError when it
    cannot be read or is not a JSON object of strings."""
    file = Path(path) if path is not None else config_path()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {file}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the config file {file} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the config file {file} must hold a JSON object")
    values: dict[str, str | None] = {}
    for name in ("url", "api_key"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"the config file {file}: {name!r} must be a string")
        values[name] = value or None
    source = f"config file {file}"
    return Config(
        url=values["url"],
        api_key=values["api_key"],
        url_source=source if values["url"] else None,
        key_source=source if values["api_key"] else None,
    )


def save_config(url: str, key: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Write ``{"url", "api_key"}`` atomically with mode 0600 (the directory is created 0700) and
    return the path."""
    file = Path(path) if path is not None else config_path()
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"url": url.rstrip("/"), "api_key": key}, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # an existing tmp file keeps its mode on open
        os.replace(tmp, file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return file


def resolve_config(
    url: str | None = None,
    api_key: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Config:
    """Explicit arguments, then the environment, then the config file; the URL defaults to
    ``http://127.0.0.1:8000`` (``lbc serve``'s default) and the key to None.

    The config file's key is used only with the config file's URL: a key saved for one server is never
    sent to another one named by ``--url`` or ``LBC_URL``.
    """
    env = os.environ if env is None else env
    found_url, url_source = (url, "--url") if url else (None, None)
    found_key, key_source = (api_key, "--key") if api_key else (None, None)
    if found_url is None and env.get(URL_ENV):
        found_url, url_source = env[URL_ENV], URL_ENV
    if found_key is None and env.get(KEY_ENV):
        found_key, key_source = env[KEY_ENV], KEY_ENV
    if found_url is None or found_key is None:
        saved = load_config(path if path is not None else config_path(env))
        if found_url is None and saved.url:
            found_url, url_source = saved.url, saved.url_source
        # The saved key belongs to the saved server: never send it to another one.
        same_server = found_url is None or _same_url(found_url, saved.url)
        if found_key is None and saved.api_key and same_server:
            found_key, key_source = saved.api_key, saved.key_source
    if found_url is None:
        found_url, url_source = DEFAULT_URL, "default"
    return Config(url=found_url.rstrip("/"), api_key=found_key, url_source=url_source, key_source=key_source)


def _same_url(a: str, b: str | None) -> bool:
    return b is not None and a.rstrip("/") == b.rstrip("/")
