"""Self-contained HTML reports of layer-wise concept profiles."""

from rcvlab.report.html import (
    environment_info,
    render_report,
    split_comparison_section,
    write_report,
)

__all__ = ["environment_info", "render_report", "split_comparison_section", "write_report"]
