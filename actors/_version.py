"""The installed version of the package, read from its distribution's metadata."""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "durable-entity-actors"
"""The package's name on PyPI: ``pip install durable-entity-actors``."""

try:
    __version__: str = version(DISTRIBUTION)
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
