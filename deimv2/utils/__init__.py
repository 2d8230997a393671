"""Small helpers every layer may use: boxes, output folders, fonts, logging, user inputs, runtime.

- :mod:`.box_ops` — box formats and IoU; :mod:`.outputs` — creating output folders;
- :mod:`.fonts` — CJK fonts for PIL and matplotlib; :mod:`.log` — the ``deimv2`` logger and its console handler;
- :mod:`.inputs` — what a user may type for a checkpoint, a device or a prediction option;
- :mod:`.runtime` — the device, the notebooks' fast mode, timing.
"""
