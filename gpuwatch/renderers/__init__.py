"""Renderers: one small base class, one subclass per output format."""

from .base import Renderer
from .html import HtmlRenderer
from .json import JsonRenderer
from .perfetto import PerfettoRenderer
from .text import TextRenderer

__all__ = ["Renderer", "TextRenderer", "JsonRenderer", "HtmlRenderer", "PerfettoRenderer"]
