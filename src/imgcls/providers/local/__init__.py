"""The local provider: EfficientNet-Lite on your CPU, exported to ONNX, predicted and served without torch."""
