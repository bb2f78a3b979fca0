"""The Ethos-U backend: Vela's compile and its verdict on placement, int16 support and crashes,
the profile a user decides by, and the Cortex-M cost of what Vela leaves on the CPU."""
