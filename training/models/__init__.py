"""PyTorch modules mirroring the pretrained PP-OCRv6 ONNX models (det.py, rec.py)."""
