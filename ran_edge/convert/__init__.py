"""PyTorch -> float TFLite -> int8 TFLite, and the checks that the int8 model is sound."""
