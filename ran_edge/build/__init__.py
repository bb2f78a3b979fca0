"""The library behind `build`, `profile`, `check`, `regress` and `advise`: typed requests in,
finished target builds out.

`requests` (cheap to import: commands build these before loading torch) -> `many.build_many`
(resolve targets, load, fingerprint, reuse, convert once, every target through its backend;
`build_loaded` is the same loop for a model already in memory) with `convert` (export,
quantize, fidelity, sensitivity, the TFLM check), `target` (one target into its folder,
atomically, report validated) and `results` (what comes back). `profile` does the same for an
int8 .tflite made elsewhere without importing torch, `check` asks Vela for placement only,
`mixed_precision` picks int16 layers by sensitivity and Vela cycles, `fingerprint` decides
reuse. Import from the submodules; this package's own import is free.
"""
