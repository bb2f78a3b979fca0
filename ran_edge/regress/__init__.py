"""CI regression gate on Vela estimates: reports compared against a committed baseline."""
