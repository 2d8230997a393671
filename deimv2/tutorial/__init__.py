"""The tutorial's own tools: ``deimv2 demo``, the environment report, the notebooks' helpers.

- :mod:`.demo` — the whole pipeline headless on the bundled data (``deimv2 demo``);
- :mod:`.environment` — versions, devices, memory, fonts (``deimv2 checks``, notebook ``00``);
- :mod:`.notebook` — workspace, parameters and trained-run helpers of the notebooks;
- :mod:`.explain` — looking inside a running model (notebooks ``07``–``09``).
"""
