"""Benchmarks of the framework and its peers: ``python -m bench`` (see ``bench/README.md``)."""
