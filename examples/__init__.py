"""Two example apps on the framework: ``examples.bank`` and ``examples.cart``."""
