"""PyTorch -> float TFLite -> int8 TFLite, and what is read off a .tflite: export with
rewrites for NPU patterns (`export`, `rewrite*`), quantization and its ranges (`quantize`,
`ranges`, `inline_buffers`), fidelity and per-op sensitivity against float, the op table
(`tflite_info`, `tflite_ops`) and attribution of ops to PyTorch modules (`attribution`)."""
