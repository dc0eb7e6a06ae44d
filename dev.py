#!/usr/bin/env python3
"""Bootstrap and run: ``python3 dev.py demo``, ``python3 dev.py test`` or ``python3 dev.py docs``.

Needs only python3 (>= 3.11) and git. Creates ``.venv`` beside this file, installs
the project with its dev extra into it (again whenever pyproject.toml changes),
then runs the demo or the whole check: ruff, mypy, the import layers (lint-imports), pytest and the API reference
(``mkdocs build --strict``, so a broken docstring reference fails the check).

The web UI's tests drive a real headless browser: Debian's ``chromium``. ``test``
installs it with apt-get when it is missing and this runs as root (as CI does);
``python3 dev.py chromium`` does only that step.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


def ensure_env(extras: str = "dev,docs") -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"python >= 3.11 is needed, this is {sys.version.split()[0]}")
    if not PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    stamp = VENV / ".installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    if not stamp.exists() or stamp.read_text() != want:
        subprocess.run(
            [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-e", f".[{extras}]"],
            cwd=ROOT, check=True,
        )
        stamp.write_text(want)


CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> bool:
    """Install Debian's chromium for the browser tests when missing; True when it is there."""
    if os.path.exists(CHROMIUM):
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"dev.py: {CHROMIUM} is missing and cannot be installed here (needs root and apt-get);"
              " the web UI's browser tests will fail: install the chromium package", flush=True)
        return False
    print("dev.py: installing Debian's chromium for the web UI's browser tests (apt-get, ~1 min)",
          flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            print(f"dev.py: {' '.join(cmd)} failed; the browser tests will fail", flush=True)
            return False
    return os.path.exists(CHROMIUM)


def run(*cmd: str) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run([str(PY), *cmd], cwd=ROOT).returncode


def main() -> int:
    what = sys.argv[1] if len(sys.argv) > 1 else "help"
    rest = sys.argv[2:]
    if what == "docs":
        ensure_env()
        return run("-m", "mkdocs", "build", "--strict", "--site-dir", "build/site", *rest)
    if what == "demo":
        ensure_env()
        return run("-m", "examples.bank", *rest)
    if what == "chromium":
        return 0 if ensure_chromium() else 1
    if what == "test":
        ensure_env()
        ensure_chromium()
        os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        codes = [
            run("-m", "ruff", "check", "actors", "persistence", "examples", "tests", "bench"),
            run("-m", "mypy"),
            run("-c", "import sys; from importlinter.cli import lint_imports_command; "
                "sys.exit(lint_imports_command())"),
            run("-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", "build/site"),
            run("-m", "pytest", "-q", *rest),
        ]
        return next((c for c in codes if c), 0)
    if what == "bench":
        ensure_env("dev,docs,bench")
        return run("-m", "bench", *rest)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
