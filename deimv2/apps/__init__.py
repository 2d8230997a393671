"""After training, the parts that run a Detector: INT8 on CPU (quantize) and a web demo (webapp); the
Detector's own helpers are deimv2.infer.interop (supervision), deimv2.infer.tiling and deimv2.infer.tracking.

Each module imports its optional packages (the ``apps`` extra: ``pip install "deimv2[apps]"``) inside the
functions that need them. Explained in notebook ``10_applications.ipynb``.
"""
