"""The bank example: accounts, a transfer saga, a kill -9 demo and an HTTP front (see README.md)."""
