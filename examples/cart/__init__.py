"""The shop example: inventory, carts that expire, checkout with a saga (see README.md)."""
