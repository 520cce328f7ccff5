"""OCRNet service package."""

__version__ = "0.1.0"  # the package, the HTTP API (OpenAPI info.version) and `ocrnet --version`
