"""Finding, loading and saving the NeXtQSM networks (TensorFlow is imported only inside functions)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bids_app.errors import UsageError

LOGGER = logging.getLogger(__name__)

__all__ = [
    "BACKGROUND_WEIGHTS", "VN_WEIGHTS", "VN_LAMBDAS", "PARAMS", "REQUIRED_FILES", "DEFAULT_WEIGHTS_DIR",
    "WEIGHTS_ENV", "REFERENCE_PARAMS", "NextQsmNetworks", "check_tensorflow", "find_weights",
    "load_networks", "save_networks",
]

BACKGROUND_WEIGHTS = "zdir_calc-HRbf-rmse-weights.weights.h5"
VN_WEIGHTS = "zdir_calc-HR-vn-nets.weights.h5"
VN_LAMBDAS = "zdir_calc-HR-vn-lambdas.npy"
PARAMS = "params.json"
# The released archive (nextqsm-weights.tar) holds the three weight files; ``params.json`` ships with the
# nextqsm package instead, so it is optional here (the released architecture is the default).
REQUIRED_FILES = (BACKGROUND_WEIGHTS, VN_WEIGHTS, VN_LAMBDAS)
DEFAULT_WEIGHTS_DIR = Path("/opt/nextqsm/weights")
WEIGHTS_ENV = "QSMAPP_NEXTQSM_WEIGHTS"

#: Architecture hyper-parameters of the released checkpoint (``params.json`` of nextqsm 1.0.6).
#: :func:`load_networks` reads the ``params.json`` next to the weights when there is one, else uses these
#: (the released archive has no params.json); also used to build networks without a checkpoint (tests).
REFERENCE_PARAMS = {
    "batch_norm": False, "starting_filters": 16, "conv_per_layer": 1, "kernel_initializer": "he_normal",
    "act_func": "relu", "n_layers": 7,
    "vn_n_steps": 6, "vn_batch_norm": False, "vn_n_layers": 6, "vn_kernel_initializer": "he_normal",
    "vn_act_func": "relu", "vn_l_init": 0.1, "vn_starting_filters": 16, "vn_dt_loss": "RMSE",
}
_REQUIRED_PARAMS = ("batch_norm", "starting_filters", "kernel_initializer", "act_func", "n_layers",
                    "vn_n_steps", "vn_batch_norm", "vn_n_layers", "vn_kernel_initializer", "vn_act_func",
                    "vn_starting_filters")
# The reference clips its step sizes to this range (a constraint on the trained variables).
_LAMBDA_RANGE = (0.0, 500.0)
_HOW_TO_GET = (
    "The qsmapp container ships them in /opt/nextqsm/weights. Otherwise download 'nextqsm-weights.tar' "
    "from the NeXtQSM authors' OSF project (https://osf.io/zqfdc/), extract it, and pass "
    f"--nextqsm-weights DIR or set {WEIGHTS_ENV}=DIR."
)


@dataclass
class NextQsmNetworks:
    """The two trained NeXtQSM networks, ready to run.

    Attributes
    ----------
    background : UNet
        Background-field removal U-Net (total field → local field, ppm).
    regulariser : UNet
        The variational network's learned regulariser ``net(x)`` (``E_R = mean|net(x)|``).
    lambdas : ndarray of float32, shape (n_steps,)
        Data-consistency weights of the unrolled gradient steps.
    params : dict
        The ``params.json`` hyper-parameters used to build them.
    source : Path or None
        The folder they were loaded from.
    """

    background: object
    regulariser: object
    lambdas: np.ndarray
    params: dict = field(default_factory=dict)
    source: Path | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)  # traced tf.functions

    @property
    def n_steps(self) -> int:
        return int(self.lambdas.size)


def check_tensorflow():
    """Raise :class:`~bids_app.errors.UsageError` (exit 64) unless TensorFlow can be imported.

    Call before any processing when the NeXtQSM backend is selected. Returns the TensorFlow version.
    """
    try:
        import tensorflow as tf
    except ImportError as error:  # also raised when sys.modules["tensorflow"] is None
        raise UsageError(
            f"the NeXtQSM backend needs TensorFlow, which cannot be imported ({error})",
            hint='install it with: pip install "qsmapp[nextqsm]", or use the qsmapp container',
        ) from None
    return tf.__version__


def _missing(folder: Path):
    return [name for name in REQUIRED_FILES if not (folder / name).is_file()]


def find_weights(explicit=None) -> Path:
    """Folder holding the NeXtQSM checkpoint files.

    Looks in ``explicit`` (the ``--nextqsm-weights DIR`` option) when given, else in the folder named by
    the environment variable ``QSMAPP_NEXTQSM_WEIGHTS``, else in ``/opt/nextqsm/weights`` (container).
    Only the first of these that is set is checked: an explicit choice that is wrong is an error, not a
    reason to fall back silently.

    Parameters
    ----------
    explicit : str or Path, optional
        Folder given on the command line.

    Returns
    -------
    Path
        The folder, which holds every file of :data:`REQUIRED_FILES`.

    Raises
    ------
    UsageError
        The folder does not exist or lacks a file; the message says where it looked, what is missing and
        how to get the weights.
    """
    if explicit is not None and str(explicit) != "":
        folder, origin = Path(explicit), "--nextqsm-weights"
    elif os.environ.get(WEIGHTS_ENV):
        folder, origin = Path(os.environ[WEIGHTS_ENV]), f"${WEIGHTS_ENV}"
    else:
        folder, origin = DEFAULT_WEIGHTS_DIR, "the default location"
    folder = folder.expanduser()
    if not folder.is_dir():
        raise UsageError(f"NeXtQSM weights folder {folder} (from {origin}) does not exist; it must hold "
                         f"{', '.join(REQUIRED_FILES)}", hint=_HOW_TO_GET)
    missing = _missing(folder)
    if missing:
        raise UsageError(f"NeXtQSM weights folder {folder} (from {origin}) lacks {', '.join(missing)}; "
                         f"it must hold {', '.join(REQUIRED_FILES)}", hint=_image_hint() or _HOW_TO_GET)
    return folder.resolve()


def _image_hint() -> str:
    """'This qsmapp image was built without the NeXtQSM weights ...' in such an image, else ''."""
    from bids_app.container import missing_hint

    return missing_hint("nextqsm_weights")


def _read_params(folder: Path) -> dict:
    if not (folder / PARAMS).is_file():
        LOGGER.info("no %s next to the NeXtQSM weights: using the released architecture", PARAMS)
        return dict(REFERENCE_PARAMS)
    try:
        params = json.loads((folder / PARAMS).read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read NeXtQSM {folder / PARAMS}: {error}", hint=_HOW_TO_GET) from None
    absent = [key for key in _REQUIRED_PARAMS if key not in params]
    if absent:
        raise UsageError(f"NeXtQSM {folder / PARAMS} lacks {', '.join(absent)}", hint=_HOW_TO_GET)
    if params.get("vn_dt_loss", "RMSE") != "RMSE":
        raise UsageError(f"NeXtQSM {folder / PARAMS}: data-consistency loss {params['vn_dt_loss']!r} is not "
                         "supported (only 'RMSE', as in the released weights)")
    return params


def build_networks(params, *, lambdas=None) -> NextQsmNetworks:
    """Networks with the architecture of ``params`` and fresh (random, He-normal) weights.

    Used for tests and benchmarks; trained networks come from :func:`load_networks`. The networks are
    built by calling them on a zero (1, 64, 64, 64, 1) tensor.
    """
    check_tensorflow()
    import tensorflow as tf

    from .networks import build_unet

    background = build_unet(params)
    regulariser = build_unet(params, prefix="vn_")
    dummy = tf.zeros((1, 64, 64, 64, 1), tf.float32)
    background(dummy, training=False)
    regulariser(dummy, training=False)
    if lambdas is None:
        lambdas = np.full(int(params["vn_n_steps"]), params.get("vn_l_init", 0.1), np.float32)
    lambdas = np.asarray(lambdas, dtype=np.float32).ravel()
    return NextQsmNetworks(background, regulariser, lambdas, dict(params))


def load_networks(weights_dir) -> NextQsmNetworks:
    """Build the NeXtQSM networks from ``params.json`` and load the checkpoint in ``weights_dir``.

    Parameters
    ----------
    weights_dir : str or Path
        Folder from :func:`find_weights` (``params.json``, the two ``.weights.h5`` files, the lambdas).

    Returns
    -------
    NextQsmNetworks

    Raises
    ------
    UsageError
        TensorFlow is missing, a file is missing or unreadable, or the weights do not fit the
        architecture (every variable must be loaded; Keras reports any that is not).
    """
    folder = Path(weights_dir)
    missing = _missing(folder)
    if missing:
        raise UsageError(f"NeXtQSM weights folder {folder} lacks {', '.join(missing)}", hint=_HOW_TO_GET)
    params = _read_params(folder)
    try:
        lambdas = np.load(folder / VN_LAMBDAS).astype(np.float32).ravel()
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read NeXtQSM {folder / VN_LAMBDAS}: {error}", hint=_HOW_TO_GET) from None
    if lambdas.size != int(params["vn_n_steps"]) or not np.all(np.isfinite(lambdas)):
        raise UsageError(f"NeXtQSM {folder / VN_LAMBDAS} holds {lambdas.size} values (finite: "
                         f"{bool(np.all(np.isfinite(lambdas)))}), expected {params['vn_n_steps']} finite ones")
    networks = build_networks(params, lambdas=np.clip(lambdas, *_LAMBDA_RANGE))
    for net, name in ((networks.background, BACKGROUND_WEIGHTS), (networks.regulariser, VN_WEIGHTS)):
        try:
            net.load_weights(str(folder / name))
        except (OSError, ValueError, KeyError) as error:
            raise UsageError(f"NeXtQSM weights {folder / name} do not fit the architecture of "
                             f"{folder / PARAMS}: {str(error).splitlines()[0]}", hint=_HOW_TO_GET) from None
    networks.source = folder
    LOGGER.debug("loaded NeXtQSM networks from %s (lambdas %s)", folder, networks.lambdas)
    return networks


def save_networks(networks: NextQsmNetworks, weights_dir) -> Path:
    """Write ``networks`` in the released checkpoint format (the file names of :data:`REQUIRED_FILES`).

    Format: ``zdir_calc-HRbf-rmse-weights.weights.h5`` and ``zdir_calc-HR-vn-nets.weights.h5`` are Keras 3
    weight files of the background U-Net and the VN regulariser U-Net; ``zdir_calc-HR-vn-lambdas.npy`` is
    the float32 vector of step weights; ``params.json`` the architecture hyper-parameters.

    Returns
    -------
    Path
        ``weights_dir``, created if needed.
    """
    folder = Path(weights_dir)
    folder.mkdir(parents=True, exist_ok=True)
    networks.background.save_weights(str(folder / BACKGROUND_WEIGHTS))
    networks.regulariser.save_weights(str(folder / VN_WEIGHTS))
    np.save(folder / VN_LAMBDAS, np.asarray(networks.lambdas, dtype=np.float32))
    (folder / PARAMS).write_text(json.dumps(networks.params, indent=1, sort_keys=True) + "\n")
    return folder
