"""The account authority: the one component that admits orders for an account (projection + gate + requests)."""
