"""A self-contained HTML report: verdict, tables and plots (PNG embedded), opens offline."""

from __future__ import annotations

import base64
import html
import io

from ..analysis import Analysis
from .base import Renderer
from .text import TextRenderer

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
.verdict{font-size:17px;background:#eef6ee;border-left:4px solid #3a3;padding:.6em 1em}
.sim{color:#a33;font-weight:bold}img{max-width:100%}pre{background:#f8f8f8;padding:1em}"""


class HtmlRenderer(Renderer):
    def render(self, analysis: Analysis) -> str:
        from ..analysis.plots import _plt, figures

        plt = _plt()
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>gpuwatch report"
                 f"</title><style>{CSS}</style></head><body><h1>gpuwatch report</h1>",
                 f"<p class='verdict'>{html.escape(analysis.verdict)}</p>"]
        for tr in analysis.traces:
            devs = ", ".join(d.get("name", "?") for d in tr.meta.get("devices", []))
            sim = " <span class='sim'>SIMULATED GPU</span>" if tr.simulated else ""
            parts.append(f"<p>Trace <code>{html.escape(str(tr.path))}</code>: "
                         f"{html.escape(devs)}{sim}, status {html.escape(str(tr.meta.get('status')))}"
                         "</p>")
        parts.append("<h2>Verdicts</h2><ul>" + "".join(
            f"<li>{html.escape(s)}</li>" for s in analysis.verdicts.get("sentence", [])) + "</ul>")
        parts.append("<h2>Latency layers</h2>" + analysis.layers.to_html(
            index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
        if not analysis.attribution.empty:
            parts.append("<h2>What explains the extra latency</h2><p>Contribution in ms with a "
                         "95% bootstrap interval; share of the extra latency.</p>"
                         + analysis.attribution.to_html(index=False, float_format=lambda v:
                                                        f"{v:.3f}", na_rep="-"))
        if not analysis.spans.empty:
            parts.append("<h2>Pre/post-processing spans</h2>" + analysis.spans.to_html(
                index=False, float_format=lambda v: f"{v:.3f}"))
        parts.append("<h2>Plots</h2>")
        for name, fig in figures(analysis).items():
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
            plt.close(fig)
            data = base64.b64encode(buf.getvalue()).decode()
            parts.append(f"<h3>{html.escape(name)}</h3><img alt='{html.escape(name)}' "
                         f"src='data:image/png;base64,{data}'>")
        parts.append("<h2>Summary</h2><pre>" + html.escape(TextRenderer().render(analysis))
                     + "</pre></body></html>")
        return "\n".join(parts)
