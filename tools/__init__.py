"""The trading operations, framework-free: market state, portfolio, risk gate, orders."""
