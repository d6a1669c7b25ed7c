"""Nothing is downloaded at run time: Ultralytics' switches are set and the network guard holds."""

import os
import shutil
import socket
import subprocess
import sys

import pytest

from quant.util.offline import NetworkGuard


def test_offline_switches_are_set():
    assert os.environ["YOLO_OFFLINE"] == "1"
    assert os.environ["YOLO_AUTOINSTALL"] == "False"
    from ultralytics.utils import ONLINE, USER_CONFIG_DIR

    assert ONLINE is False
    assert (USER_CONFIG_DIR / "Arial.ttf").is_file()  # no font download


def test_guard_blocks_and_records():
    with NetworkGuard() as g:
        with pytest.raises(OSError):
            socket.getaddrinfo("example.com", 443)
        with pytest.raises(OSError), socket.socket() as s:
            s.connect(("93.184.215.14", 443))
    assert len(g.attempts) == 2
    socket.getaddrinfo("localhost", 80)  # restored


def _loopback_roundtrip() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        with socket.socket() as c:
            c.connect(srv.getsockname())


def test_guard_allows_loopback():
    try:
        _loopback_roundtrip()
    except OSError as e:  # e.g. a network namespace whose loopback interface is down
        pytest.skip(f"loopback itself is unavailable here ({e})")
    with NetworkGuard() as g:
        _loopback_roundtrip()
    assert g.attempts == []


def test_export_and_validation_touch_no_network(tiny_weights, tiny_data, tmp_path):
    """A fresh process (cold Ultralytics settings) exports, quantizes and validates with sockets blocked."""
    code = f"""
import sys, json
from quant.util.offline import NetworkGuard
with NetworkGuard() as g:
    from quant.run.suite import Suite
    s = Suite.create({str(tiny_weights)!r}, {str(tiny_data)!r}, 96, {str(tmp_path / 'cache')!r}, calib_images=2)
    s.evaluations.accuracy("onnx-int8-minmax")
    from quant.util.offline import ultralytics_yolo
    ultralytics_yolo()({str(tiny_weights)!r}).predict({str(next((tiny_data.parent / 'val' / 'images').glob('*.png')))!r}, imgsz=96, verbose=False)
print(json.dumps(g.attempts))
"""
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "cfg"), "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-c", code]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        cmd = ["unshare", "-n", *cmd]  # and no network namespace either, where we may
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-1000:]


def test_the_guard_itself_refuses_even_where_the_network_would_answer(monkeypatch):
    """With the real connect stubbed to succeed, only the guard stands between the code and the network."""
    calls = []
    monkeypatch.setattr(socket.socket, "connect", lambda sock, address: calls.append(address))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda sock, address: calls.append(address) or 0)
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: calls.append(host) or [])
    with NetworkGuard() as g:
        with socket.socket() as s:
            with pytest.raises(OSError, match="network disabled by quant.util.offline.NetworkGuard"):
                s.connect(("93.184.215.14", 443))
            assert s.connect_ex(("93.184.215.14", 443)) == 111
        with pytest.raises(OSError):
            socket.getaddrinfo("example.com", 443)
        with socket.socket() as s:
            s.connect(("127.0.0.1", 9))  # loopback goes through
    assert calls == [("127.0.0.1", 9)] and len(g.attempts) == 3


def test_import_quant_changes_nothing_until_configured(tmp_path):
    """``import quant`` (and its modules) leaves the environment and the disk alone; the first path into
    Ultralytics configures the offline switches itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "YQB_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    code = """
import os, json, pathlib, sys
import quant, quant.run.suite, quant.run.session, quant.registry, quant.util.offline
before = {"yolo_env": sorted(k for k in os.environ if k.startswith("YOLO_")),
          "created": sorted(str(p) for p in pathlib.Path(sys.argv[1]).rglob("*"))}
quant.util.offline.ultralytics_module("utils")
after = {"offline": os.environ.get("YOLO_OFFLINE")}
print(json.dumps([before, after]))
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    before, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == {"yolo_env": [], "created": []}
    assert after == {"offline": "1"}
