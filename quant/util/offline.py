"""Keep Ultralytics offline: no weight/data/font downloads, no pip auto-installs, no telemetry.

``configure()`` must run before ``ultralytics`` is first imported: the pytest plugin, ``python -m quant``
and the PPQ worker call it first thing, and :func:`ultralytics_yolo` / :func:`ultralytics_module` (the
only ways the package reaches Ultralytics) call it too. ``import quant`` itself changes nothing.
``NetworkGuard`` blocks (and records) every outbound connection of the process, so tests can
prove that nothing reaches the network.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
from pathlib import Path

from quant.util.paths import default_cache_dir



_configured: Path | None = None


def configure(config_dir: str | os.PathLike | None = None) -> Path:
    """Set Ultralytics' offline switches (environment) and give it a local font. Idempotent."""
    global _configured
    if _configured is not None and config_dir is None and os.environ.get("YOLO_OFFLINE") == "1":
        return _configured
    cfg = Path(os.environ.get("YOLO_CONFIG_DIR") or config_dir or default_cache_dir() / "ultralytics")
    cfg.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    os.environ["YOLO_OFFLINE"] = "1"  # is_online() -> False: no downloads attempted
    os.environ["YOLO_AUTOINSTALL"] = "False"  # never pip-install missing requirements
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    # Every val/train asks for Arial.ttf in USER_CONFIG_DIR (YOLO_CONFIG_DIR/Ultralytics) and
    # would download it: any local TTF will do.
    fonts = cfg / "Ultralytics"
    fonts.mkdir(exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (fonts / name).exists():
            font = _local_ttf()
            if font is not None:
                tmp = fonts / f".{name}.tmp"
                shutil.copyfile(font, tmp)
                os.replace(tmp, fonts / name)
    _configured = cfg
    return cfg


def _local_ttf() -> Path | None:
    try:
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return p if p.exists() else None
    except ImportError:
        return None


_QUIET_SETTINGS = {"sync": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False,
                   "raytune": False, "tensorboard": False, "wandb": False, "vscode_msg": False}


def ultralytics_yolo():
    """``ultralytics.YOLO``, with analytics/sync and logger integrations turned off in its settings."""
    configure()
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    changed = {k: v for k, v in _QUIET_SETTINGS.items() if k in SETTINGS and SETTINGS[k] != v}
    if changed:
        SETTINGS.update(changed)
    return YOLO


def ultralytics_module(name: str):
    """``import ultralytics.<name>`` after :func:`configure` (e.g. ``"data.augment"``)."""
    import importlib

    configure()
    return importlib.import_module(f"ultralytics.{name}")


class NetworkGuard:
    """Refuse every non-loopback connection and DNS lookup; remember what was attempted."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._saved: tuple | None = None

    def _blocked(self, what: str) -> OSError:
        self.attempts.append(what)
        return OSError(f"network disabled by quant.util.offline.NetworkGuard: {what}")

    @staticmethod
    def _is_local(host) -> bool:
        if host in ("localhost", "", None):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def __enter__(self) -> "NetworkGuard":
        guard = self
        orig_connect, orig_connect_ex, orig_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not guard._is_local(address[0]):
                raise guard._blocked(f"connect {address!r}")
            return orig_connect(sock, address)

        def connect_ex(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not guard._is_local(address[0]):
                guard._blocked(f"connect {address!r}")
                return 111  # ECONNREFUSED
            return orig_connect_ex(sock, address)

        def getaddrinfo(host, *args, **kwargs):
            if not guard._is_local(host):
                raise socket.gaierror(socket.EAI_NONAME, str(guard._blocked(f"resolve {host!r}")))
            return orig_getaddrinfo(host, *args, **kwargs)

        self._saved = (orig_connect, orig_connect_ex, orig_getaddrinfo)
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
        return self

    def __exit__(self, *exc) -> None:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = self._saved
