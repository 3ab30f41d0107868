"""Measurement of a trial's model: latency (and the per-layer latency table), the runtime it is
served in (PyTorch or ONNX Runtime), quality, energy and size."""
