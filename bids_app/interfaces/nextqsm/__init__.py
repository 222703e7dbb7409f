"""NeXtQSM deep-learning QSM backend (TensorFlow, optional).

NeXtQSM (Cognolato et al. 2022, doi:10.1016/j.media.2022.102700) replaces background-field removal and
dipole inversion: a U-Net turns the total field into the local field, then a variational network of six
learned, data-consistent gradient steps turns the local field into susceptibility.

Importing this package does not import TensorFlow; :func:`check_tensorflow` and :func:`find_weights`
are cheap checks to run before any processing. Typical use::

    from bids_app.interfaces import nextqsm as nx
    nx.check_tensorflow()
    networks = nx.load_networks(nx.find_weights(cli_value))
    chi_ppm, local_ppm = nx.nextqsm(field_ppm, mask, voxel_size=vox, b0_dir=b0, networks=networks)

The network code (:mod:`.networks`) is an independent implementation that loads the released checkpoint
files of the PyPI ``nextqsm`` package (MIT); its docstring explains the naming constraints that keeps.
"""

from .backend import nextqsm, reference_dipole_kernel
from .weights import (
    DEFAULT_WEIGHTS_DIR,
    REFERENCE_PARAMS,
    REQUIRED_FILES,
    WEIGHTS_ENV,
    NextQsmNetworks,
    build_networks,
    check_tensorflow,
    find_weights,
    load_networks,
    save_networks,
)

__all__ = [
    "nextqsm", "reference_dipole_kernel", "check_tensorflow", "find_weights", "load_networks",
    "save_networks", "build_networks", "NextQsmNetworks", "REQUIRED_FILES", "REFERENCE_PARAMS",
    "WEIGHTS_ENV", "DEFAULT_WEIGHTS_DIR",
]
