"""Scanner data to BIDS (``qsmapp-convert``) and qsmapp maps back to DICOM (``qsmapp-export``).

* :mod:`.sources` — find the input files (DICOM, gzipped DICOM or NIfTI + JSON), stage them for
  ``dcm2niix`` outside the input folder, read the identity fields dcm2niix drops (pydicom).
* :mod:`.dcm2niix` — run the ``dcm2niix`` binary shipped by the PyPI wheel.
* :mod:`.series` — one converted image with its sidecar: what it is (magnitude, phase, real, imaginary,
  phase difference, Hz field map, T1w, other).
* :mod:`.rules` — the rule file: ``dcm2bids``' configuration format (``descriptions`` with ``criteria``).
* :mod:`.phase` — vendor phase conventions, rescaled to radians and recorded.
* :mod:`.plan` — series grouped into BIDS files (echoes, parts, runs), with the reason for each decision.
* :mod:`.writer` — the BIDS dataset written atomically.
* :mod:`.workflow` — all of it for one call of ``qsmapp-convert``.
* :mod:`.export` — QSM, SWI and minIP as DICOM series.
"""
