"""One thin router per capability: ocr, models, health, metrics."""
