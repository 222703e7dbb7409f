"""Anatomical segmentation of the T1w: FastSurfer, a registered labelled template, or tissue classes.

Every backend returns a :class:`T1wSegmentation` (labels on the T1w grid with their look-up table and the
name of the backend that produced them); :mod:`bids_app.pipeline.segmentation` carries the labels into
GRE space.
"""

from .backends import BACKEND_REFERENCES, T1wSegmentation, available_backend, segment_t1w

__all__ = ["BACKEND_REFERENCES", "T1wSegmentation", "available_backend", "segment_t1w"]
