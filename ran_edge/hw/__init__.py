"""Targets and the tools that cost a model on them (Vela for Ethos-U)."""
