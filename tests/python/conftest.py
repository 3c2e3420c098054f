"""Shared helpers for the independent-client tests.

These tests start the project's real binaries (built by `cargo build --workspace --bins
--features consul/standin`, which scripts/test.sh does first) on free loopback ports and drive
them with Python clients that nobody in this project wrote.
"""
import os
import pathlib
import socket
import subprocess
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET_DIR = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def binary(name: str) -> pathlib.Path:
    """Path of a workspace binary; fails (never skips) when it was not built."""
    path = TARGET_DIR / "debug" / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: run `cargo build --workspace --bins --features consul/standin`"
            " (scripts/test.sh does)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until `url` answers 200, failing early if `proc` exits."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process exited with {proc.returncode} before {url} answered")
        try:
            r = requests.get(url, timeout=1)
            if r.status_code == 200:
                return
            last = r.status_code
        except requests.RequestException as e:
            last = e
        time.sleep(0.05)
    pytest.fail(f"{url} did not answer 200 within {timeout}s (last: {last})")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
