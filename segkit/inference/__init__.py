"""Inference: a trained model loaded from its checkpoint, its forward pass, tiles at native resolution, post-
processing, and export to ONNX or TorchScript."""
