"""The ``otel`` extra is optional: ``import actors`` never loads OpenTelemetry, and
``actors.otel`` without it fails with an error that names the extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BLOCK_OTEL = """
import importlib.abc, sys

class _NoOtel(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoOtel())
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_importing_actors_does_not_import_opentelemetry() -> None:
    proc = run(
        """
        import sys
        import actors, actors.observe, persistence
        from actors import ActorSystem
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
        print(loaded)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_actors_otel_without_the_extra_names_it() -> None:
    proc = run(
        BLOCK_OTEL
        + """
import actors  # the package itself is fine without it
try:
    import actors.otel
except ImportError as e:
    print("refused:", e)
"""
    )
    assert proc.returncode == 0, proc.stderr
    needs = "refused: actors.otel needs OpenTelemetry: pip install 'durable-entity-actors[otel]'"
    assert needs in proc.stdout
