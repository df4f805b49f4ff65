"""Settings of the measuring pipeline: one frozen, validated object.

Every result stores the settings it was made with (``Settings.to_dict``), every number of
it (the classical method's tuned constants included), so a number in the endpoint table can
always be traced back to the exact configuration. Defined in :mod:`lesionquant.segment`
(everything it configures is segmentation); this is the import path for users.
"""

from __future__ import annotations

from lesionquant.segment import Method, Settings

__all__ = ["Method", "Settings"]
