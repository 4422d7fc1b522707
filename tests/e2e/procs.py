"""Helpers to run kamibot code in separate OS processes from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def spawn(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def settings_env(data_dir: Path, db_url: str) -> dict[str, str]:
    return {"KAMIBOT_DATA_DIR": str(data_dir), "KAMIBOT_DATABASE_URL": db_url, "KAMIBOT_LOG_LEVEL": "WARNING"}
