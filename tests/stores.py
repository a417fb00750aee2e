"""Real storage servers for tests, started on 127.0.0.1 with a random port and stopped after:
Azurite (npm package ``azurite``) for Azure Blob/ADLS through adlfs, moto for S3 through s3fs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's published dev key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 30.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def azurite_binary() -> str:
    """``$AZURITE_BLOB``, the copy ``make test`` installs in ``.tools/``, or one on PATH."""
    for candidate in (os.environ.get("AZURITE_BLOB"), str(REPO / ".tools/node_modules/.bin/azurite-blob"), shutil.which("azurite-blob")):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("azurite-blob not found: run `make test` (it installs the npm package azurite into .tools/)")


@contextmanager
def azurite() -> Iterator[dict[str, str]]:
    port = free_port()
    location = tempfile.mkdtemp(prefix="azurite-")
    proc = subprocess.Popen([azurite_binary(), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", location,
                             "--silent", "--skipApiVersionCheck", "--loose"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
        yield {"AZURE_STORAGE_CONNECTION_STRING": conn}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(location, ignore_errors=True)


@contextmanager
def moto() -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        _wait_port(port)
        yield {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret-not-for-logs",
               "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1"}
    finally:
        server.stop()


@contextmanager
def hub_serve(root: str, log_path: Path, env: dict[str, str] | None = None, timeout: float = 60.0) -> Iterator[str]:
    """``hub serve ROOT`` in a subprocess on 127.0.0.1 and a free port (``env`` added to the environment), its output in
    ``log_path``; yields its base URL once ``/healthz`` answers, and stops it."""
    import urllib.request

    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", root, "--host", "127.0.0.1", "--port", str(port)],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"hub serve exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:  # not listening yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"hub serve did not answer /healthz within {timeout:.0f} s:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
