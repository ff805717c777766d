"""common: the bottom layer every package may import (numpy only; nothing from the other packages).

- ``entrolab.common.heap``: ``keep_freed_memory()``, glibc's malloc told to keep freed blocks for reuse (fewer page
  faults in CPU tensor work).
- ``entrolab.common.runio``: run files: atomic writes, the git SHA, peak RSS, metric-row truncation on resume, the
  code fingerprint that keys cached results.
- ``entrolab.common.verdict``: the verdict words, the ``Row`` of a check, ``run_all``, the table and JSON of a
  verification run.
"""
