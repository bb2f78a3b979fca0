"""The library behind `build`, `profile`, `regress` and `advise`: typed requests in, finished
target builds out.

`requests` (no heavy imports: the CLI builds these before loading torch) -> `many.build_many`
(load, fingerprint, reuse, convert once, every target through its backend) with `convert` (the
target-independent half: export, quantize, fidelity, sensitivity, TFLM check) and `target`
(one target into its folder, atomically). `profile` does the same for an int8 .tflite made
elsewhere. Import from the submodules; this package's own import is free.
"""
