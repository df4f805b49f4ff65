"""The local review viewer: ``lesionquant review OUT`` (see :func:`serve_review`)."""

from __future__ import annotations

from lesionquant.review._server import ReviewServer, refresh_tables, serve_review

__all__ = ["ReviewServer", "refresh_tables", "serve_review"]
