"""The error every data check raises, and how a check lists what it found.

The checks live beside what they check: a dataset's own files in its module under
:mod:`.datasets` (layout, pre-check, diagnosis of a parser failure), parsed tracklets in
:mod:`.tracklet_checks`, frame files in :mod:`.frame_checks`. Each raises a
:class:`DataValidationError` whose message names the dataset, the file / row / tracklet, the
offending value, what was allowed and how to fix it.

Example:
    >>> raise_listed("toy train: 1 problem(s):", ["row 3: camera 9 outside 1..6"], ["re-download"])
    Traceback (most recent call last):
    ...
    tfclip_torchreid.data.errors.DataValidationError: toy train: 1 problem(s):
      row 3: camera 9 outside 1..6
    Fix: re-download
"""

from __future__ import annotations

from typing import List, NoReturn

__all__ = ["DataValidationError", "raise_listed"]


class DataValidationError(ValueError):
    """A dataset failed a check; the message names the file, row or tracklet and the fix."""


def raise_listed(header: str, problems: List[str], fixes: List[str],
                 max_listed: int = 20) -> NoReturn:
    """Raise a :class:`DataValidationError`: ``header``, the first ``max_listed`` problems
    (indented, with a count of the rest), then one ``Fix:`` line per fix."""
    lines = [header]
    lines += [f"  {p}" for p in problems[:max_listed]]
    if len(problems) > max_listed:
        lines.append(f"  ... and {len(problems) - max_listed} more")
    lines += [f"Fix: {f}" for f in fixes]
    raise DataValidationError("\n".join(lines))
