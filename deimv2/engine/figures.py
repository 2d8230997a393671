"""Matplotlib figures for the engine's plots (evaluation curves, F1 curve): CJK font set, not kept in pyplot."""

from __future__ import annotations

__all__ = ["new_figure"]


def new_figure(figsize):
    """A matplotlib Figure with the CJK font set up (not kept in pyplot state)."""
    import matplotlib.pyplot as plt  # imported on first plot only: training and evaluation never need it

    from ..draw import setup_matplotlib_cjk

    setup_matplotlib_cjk()

    # a pyplot figure (closed right away) renders in a fresh Jupyter kernel; a bare Figure shows as text
    fig = plt.figure(figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig
