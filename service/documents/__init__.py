"""Multi-page documents as pages for OCR: PDF (text layer or rendered pages, via pypdfium2) and multi-page TIFF.

Torch-free and HTTP-free like ``service.vision``; the service's ``service.api.pages`` schedules these calls.
"""
from service.documents.errors import DocumentError
from service.documents.pdf import PagePlan, PdfPages, RenderPolicy, TextLayerLine, is_pdf
from service.documents.tiff import tiff_page_count

__all__ = ["DocumentError", "PagePlan", "PdfPages", "RenderPolicy", "TextLayerLine", "is_pdf", "tiff_page_count"]
