"""Self-contained HTML reports of layer-wise concept profiles."""

from rcvlab.report.html import environment_info, render_report, write_report

__all__ = ["environment_info", "render_report", "write_report"]
