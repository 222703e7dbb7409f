"""Pure algorithms: numpy arrays in, numpy arrays out, physical units, no file I/O.

Modules: ``phase`` (scaling), ``unwrap`` (ROMEO, Laplacian), ``echoes`` (B0 map), ``masking``
(thresholds, hole filling, BET), ``background`` (V-SHARP, PDF, LBV), ``inversion`` (TKD, Tikhonov,
RTS, TV, TGV), ``referencing``, ``metrics``, ``dipole`` (forward model), ``geometry`` (B0 direction,
obliquity), ``swi``, ``relaxometry``.
"""
