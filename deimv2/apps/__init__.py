"""After training: supervision interop, tiled inference, video tracking, INT8 on CPU and a web demo.

Each module imports its optional packages (the ``apps`` extra: ``pip install "deimv2[apps]"``) inside the
functions that need them. Explained in notebook ``10_applications.ipynb``.
"""
