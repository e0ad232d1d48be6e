"""The bundled sample: synthetic clips with known sound-source paths (`python -m pipeline sample`).

A media generator, kept apart from the runner: the pipeline never imports it to build a dataset.
"""

from samplegen.clips import generate_sample

__all__ = ["generate_sample"]
