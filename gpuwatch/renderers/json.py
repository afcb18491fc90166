from __future__ import annotations

from ..analysis.pipeline import Analysis
from .base import Renderer


class JsonRenderer(Renderer):
    """Everything the analysis found, as JSON (verdicts, layers, attribution, spans)."""

    def render(self, analysis: Analysis) -> str:
        return analysis.to_json(indent=1)
