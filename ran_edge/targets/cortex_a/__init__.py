"""The Cortex-A backend (Raspberry Pi boards, generic cores, `host`): LiteRT + XNNPACK
latency measured here or over SSH, or estimated per op from the profile's fitted model."""
