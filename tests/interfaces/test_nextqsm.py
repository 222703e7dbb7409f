"""NeXtQSM backend: checkpoint format, save/load, padding, B0 handling, VN gradient, weight discovery.

No trained weights are available here, so the networks carry random (He-normal) weights: the tests
check the machinery (format, shapes, masks, geometry, gradients), not the accuracy of NeXtQSM.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
h5py = pytest.importorskip("h5py")
# Keras 3.15 itself calls np.array(x, copy=False) on TF variables when saving weights (harmless).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

from bids_app.algorithms.dipole import dipole_kernel  # noqa: E402
from bids_app.errors import EXIT_USAGE, UsageError  # noqa: E402
from bids_app.interfaces import nextqsm as nx  # noqa: E402
from bids_app.interfaces.nextqsm import backend, weights  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHAPE = (40, 48, 36)


@pytest.fixture(scope="module")
def networks():
    tf.keras.utils.set_random_seed(7)
    lambdas = np.array([0.5, 1.0, 2.0, 3.0, 5.0, 8.0], np.float32)
    return nx.build_networks(nx.REFERENCE_PARAMS, lambdas=lambdas)


@pytest.fixture(scope="module")
def checkpoint(networks, tmp_path_factory):
    return nx.save_networks(networks, tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def head():
    """A smooth field inside an ellipsoidal 'brain' on a small odd/even grid."""
    grid = np.indices(SHAPE).astype(np.float32)
    centre = (np.asarray(SHAPE) - 1) / 2
    radii = np.array([15.0, 18.0, 13.0])
    mask = sum(((grid[a] - centre[a]) / radii[a]) ** 2 for a in range(3)) < 1.0
    rng = np.random.default_rng(0)
    field = (0.01 * (grid[0] - centre[0]) + 0.05 * np.sin(grid[1] / 4.0)
             + 0.005 * rng.standard_normal(SHAPE)).astype(np.float32)
    return field, mask


def _datasets(path):
    found = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, obj: found.__setitem__(name, obj.shape)
                          if isinstance(obj, h5py.Dataset) else None)
    return found


def _released_layout(n_layers, start=16):
    """Variable paths and shapes of the released .weights.h5 files (read from nextqsm 1.0.6's format)."""
    filters = [min(start * 2**i, 512) for i in range(n_layers)]
    layout = {}
    for i in range(n_layers):
        name = "cnn" if i == 0 else f"cnn_{i}"
        layout[f"encoder/{name}/layers/conv3d/vars/0"] = (3, 3, 3, 1 if i == 0 else filters[i - 1], filters[i])
        layout[f"encoder/{name}/layers/conv3d/vars/1"] = (filters[i],)
    for k, level in enumerate(range(n_layers - 2, -1, -1)):
        name = "cnn" if k == 0 else f"cnn_{k}"
        inputs = filters[level + 1] * (1 if k == 0 else 2)  # concatenated skip from the second level up
        layout[f"decoder/{name}/layers/conv3d_transpose/vars/0"] = (3, 3, 3, filters[level], inputs)
        layout[f"decoder/{name}/layers/conv3d_transpose/vars/1"] = (filters[level],)
    layout["last_conv/layers/conv3d/vars/0"] = (3, 3, 3, 2 * filters[0], 1)
    layout["last_conv/layers/conv3d/vars/1"] = (1,)
    return layout


# ------------------------------------------------------------------------------ checkpoint format
def test_checkpoint_has_the_released_layout(checkpoint):
    assert sorted(p.name for p in checkpoint.iterdir()) == sorted([*nx.REQUIRED_FILES, weights.PARAMS])
    assert _datasets(checkpoint / weights.BACKGROUND_WEIGHTS) == _released_layout(7)
    assert _datasets(checkpoint / weights.VN_WEIGHTS) == _released_layout(6)
    assert json.loads((checkpoint / weights.PARAMS).read_text())["vn_n_steps"] == 6


def test_save_then_load_gives_identical_networks(networks, checkpoint):
    loaded = nx.load_networks(checkpoint)
    np.testing.assert_array_equal(loaded.lambdas, networks.lambdas)
    assert loaded.params == networks.params and loaded.source == checkpoint
    x = tf.random.stateless_normal((1, 64, 64, 64, 1), seed=(1, 2))
    for before, after in ((networks.background, loaded.background), (networks.regulariser, loaded.regulariser)):
        reference = before(x).numpy()
        assert np.abs(reference).max() > 0
        np.testing.assert_array_equal(after(x).numpy(), reference)


def test_released_archive_without_params_json_loads_the_released_architecture(networks, checkpoint, tmp_path):
    for name in nx.REQUIRED_FILES:
        (tmp_path / name).write_bytes((checkpoint / name).read_bytes())
    assert nx.find_weights(tmp_path) == tmp_path.resolve()
    loaded = nx.load_networks(tmp_path)
    assert loaded.params == dict(nx.REFERENCE_PARAMS)
    np.testing.assert_array_equal(loaded.lambdas, networks.lambdas)


def test_load_rejects_a_checkpoint_of_another_architecture(checkpoint, tmp_path):
    for name in nx.REQUIRED_FILES:
        (tmp_path / name).write_bytes((checkpoint / name).read_bytes())
    params = dict(nx.REFERENCE_PARAMS, n_layers=6)
    (tmp_path / weights.PARAMS).write_text(json.dumps(params))
    with pytest.raises(UsageError, match="do not fit the architecture"):
        nx.load_networks(tmp_path)
    (tmp_path / weights.PARAMS).write_text(json.dumps(nx.REFERENCE_PARAMS))
    np.save(tmp_path / weights.VN_LAMBDAS, np.ones(4, np.float32))
    with pytest.raises(UsageError, match="expected 6"):
        nx.load_networks(tmp_path)
    (tmp_path / weights.VN_WEIGHTS).unlink()
    with pytest.raises(UsageError, match=weights.VN_WEIGHTS):
        nx.load_networks(tmp_path)


# --------------------------------------------------------------------------------- dipole kernel
@pytest.mark.parametrize("voxel_size, b0", [((1.0, 1.0, 1.0), (0, 0, 1)), ((0.8, 1.0, 1.5), (0.2, -0.3, 0.93))])
def test_reference_kernel_matches_project_kernel_away_from_dc(voxel_size, b0):
    shape = (32, 48, 64)
    ours = dipole_kernel(shape, voxel_size=voxel_size, b0_dir=b0).astype(np.float64)
    ref = nx.reference_dipole_kernel(shape, voxel_size=voxel_size, b0_dir=b0).astype(np.float64)
    assert ref[0, 0, 0] == pytest.approx(1.0 / 3.0) and ours[0, 0, 0] == 0.0
    k = np.meshgrid(*[np.fft.fftfreq(n, d) for n, d in zip(shape, voxel_size)], indexing="ij")
    k2 = sum(c * c for c in k)
    away = k2 > 0
    # Only difference: the reference's ε = 1.19e-7 mm⁻² added to |k|², relative size ε/|k|² (≤ 1 here).
    bound = np.finfo(np.float32).eps / k2[away] + 2e-6
    assert np.all(np.abs(ref[away] - ours[away]) <= bound)
    assert np.abs(ref[away] - ours[away]).max() < 2e-3
    with pytest.raises(ValueError, match="even"):
        nx.reference_dipole_kernel((31, 32, 32))


# ------------------------------------------------------------------------------- VN gradient step
def test_data_consistency_gradient_matches_analytic_adjoint():
    shape, voxel_size, b0, lam = (32, 40, 24), (1.0, 1.2, 0.9), np.array([0.25, -0.2, 0.95]), 3.5
    b0 = b0 / np.linalg.norm(b0)
    kernel = nx.reference_dipole_kernel(shape, voxel_size=voxel_size, b0_dir=b0)
    rng = np.random.default_rng(1)
    local = rng.standard_normal(shape).astype(np.float32)
    x = (local + 0.3 * rng.standard_normal(shape)).astype(np.float32)
    forward = backend._dipole_operator(tf, kernel)
    xt = tf.constant(x[None, ..., None])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        energy = lam * backend._data_term(tf, tf.constant(local[None, ..., None]), xt, forward)
    autodiff = tape.gradient(energy, xt).numpy()[0, ..., 0].astype(np.float64)

    def apply(v):  # A = Re F⁻¹ D F; with D real, Aᵀ = A
        return np.real(np.fft.ifftn(kernel.astype(np.float64) * np.fft.fftn(v)))

    f, xd = local.astype(np.float64), x.astype(np.float64)
    residual = f - apply(xd)
    assert float(energy) == pytest.approx(lam * 100 * np.linalg.norm(residual) / np.linalg.norm(f), rel=1e-5)
    analytic = -lam * 100.0 / (np.linalg.norm(f) * np.linalg.norm(residual)) * apply(residual)
    np.testing.assert_allclose(autodiff, analytic, rtol=1e-4, atol=1e-4 * np.abs(analytic).max())


def test_first_step_treats_the_local_field_as_data(networks):
    """x₀ is the local field itself: the gradient must not flow into the data term's labels."""
    kernel = nx.reference_dipole_kernel((16, 16, 16))
    local = tf.constant(np.random.default_rng(2).standard_normal((1, 16, 16, 16, 1)).astype(np.float32))
    forward = backend._dipole_operator(tf, kernel)
    x = local
    with tf.GradientTape() as tape:
        tape.watch(x)
        energy = backend._data_term(tf, local, x, forward)
    with tf.GradientTape() as tape2:
        copy = tf.identity(local)
        tape2.watch(copy)
        energy2 = backend._data_term(tf, local, copy, forward)
    np.testing.assert_allclose(tape.gradient(energy, x).numpy(), tape2.gradient(energy2, copy).numpy(),
                               rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------ padding, backend
@pytest.mark.parametrize("shape", [(40, 48, 36), (64, 65, 1), (63, 128, 129)])
def test_padding_round_trip_is_exact(shape):
    volume = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    widths = backend._pad_widths(shape)
    padded = backend._pad(volume, widths)
    assert all(n % 64 == 0 and n >= m for n, m in zip(padded.shape, shape))
    # reference placement: the odd voxel goes before the volume
    assert all(before - after in (0, 1) for before, after in widths)
    np.testing.assert_array_equal(backend._crop(padded, widths), volume)
    assert np.count_nonzero(padded) == np.count_nonzero(volume)


def test_backend_output_shape_mask_and_cropping(networks, head):
    field, mask = head
    chi, local = nx.nextqsm(field, mask, voxel_size=(1.0, 1.0, 1.0), networks=networks)
    for out in (chi, local):
        assert out.shape == SHAPE and out.dtype == np.float32 and np.all(np.isfinite(out))
        assert np.all(out[~mask] == 0) and np.abs(out[mask]).max() > 0
    # The same data placed on a 64³ grid where the padding would put it (no padding needed there) must
    # give exactly the same numbers: padding and cropping are exact.
    widths = backend._pad_widths(SHAPE)
    inside = tuple(slice(before, before + n) for (before, _), n in zip(widths, SHAPE))
    big_field = np.zeros((64, 64, 64), np.float32)
    big_mask = np.zeros((64, 64, 64), bool)
    big_field[inside], big_mask[inside] = field, mask
    big_chi, big_local = nx.nextqsm(big_field, big_mask, voxel_size=(1.0, 1.0, 1.0), networks=networks)
    np.testing.assert_array_equal(big_chi[inside], chi)
    np.testing.assert_array_equal(big_local[inside], local)


def test_backend_rejects_bad_inputs(networks, head):
    field, mask = head
    with pytest.raises(ValueError, match="mask shape"):
        nx.nextqsm(field, mask[:-1], voxel_size=(1, 1, 1), networks=networks)
    with pytest.raises(ValueError, match="empty"):
        nx.nextqsm(field, np.zeros_like(mask), voxel_size=(1, 1, 1), networks=networks)
    with pytest.raises(ValueError, match="b0_dir"):
        nx.nextqsm(field, mask, voxel_size=(1, 1, 1), b0_dir=(0, 0, 0), networks=networks)
    with pytest.raises(ValueError, match="voxel_size"):
        nx.nextqsm(field, mask, voxel_size=(1, 0, 1), networks=networks)
    with pytest.raises(ValueError, match="load_networks"):
        nx.nextqsm(field, mask, voxel_size=(1, 1, 1), networks=None)


# --------------------------------------------------------------------------------- B0 direction
def _tilted(degrees):
    a = np.radians(degrees)
    return np.array([np.sin(a) * 0.6, np.sin(a) * 0.8, np.cos(a)])


def test_rotated_grid_has_b0_along_z(head):
    _, mask = head
    voxel_size, b0 = np.array([1.0, 1.1, 1.3]), _tilted(25.0)
    grid = backend._B0Grid(mask, voxel_size, b0)
    np.testing.assert_allclose(grid.rotation @ b0, [0, 0, 1], atol=1e-12)
    # The physical coordinate along B0 must become (voxel size × z index) on the rotated grid.
    index = np.indices(SHAPE).astype(np.float64)
    along_b0 = sum(b0[a] * voxel_size[a] * index[a] for a in range(3))
    rotated = grid.to_rotated(along_b0)  # linear everywhere, so trilinear interpolation is exact
    inside = backend.ndimage.binary_erosion(grid.to_rotated(mask.astype(np.float32)) > 0.5, iterations=2)
    gx, gy, gz = np.gradient(rotated)
    assert inside.sum() > 1000
    assert np.abs(gx[inside]).max() < 1e-6 and np.abs(gy[inside]).max() < 1e-6
    np.testing.assert_allclose(gz[inside], voxel_size[2], rtol=1e-6)


def test_b0_resampling_round_trip_of_a_smooth_field(head):
    _, mask = head
    voxel_size, b0 = (1.0, 1.0, 1.2), _tilted(20.0)
    index = np.indices(SHAPE).astype(np.float32)
    smooth = (np.sin(index[0] / 7.0) * np.cos(index[1] / 9.0) + 0.02 * index[2]).astype(np.float32)
    grid = backend._B0Grid(mask, voxel_size, b0)
    mask_r = grid.to_rotated(mask.astype(np.float32)) > 0.5
    there = grid.to_rotated(backend._extend(np.where(mask, smooth, 0), mask, voxel_size)) * mask_r
    back = grid.from_rotated(backend._extend(there, mask_r, voxel_size))
    error = np.abs(back - smooth)[mask]
    assert error.max() < 0.05 * np.abs(smooth[mask]).max()
    assert np.sqrt(np.mean(error**2)) < 0.005 * np.abs(smooth[mask]).max()


def test_oblique_b0_gives_finite_masked_output(networks, head):
    field, mask = head
    chi, local = nx.nextqsm(field, mask, voxel_size=(1.0, 1.0, 1.2), b0_dir=_tilted(20.0), networks=networks)
    for out in (chi, local):
        assert out.shape == SHAPE and np.all(np.isfinite(out)) and np.all(out[~mask] == 0)
        assert np.abs(out[mask]).max() > 0


# ------------------------------------------------------------------------------- weight discovery
def test_find_weights_explicit_env_and_default(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv(nx.WEIGHTS_ENV, str(checkpoint))
    assert nx.find_weights() == checkpoint.resolve()
    with pytest.raises(UsageError) as info:  # an explicit folder wins over the environment
        nx.find_weights(tmp_path / "nope")
    message = str(info.value)
    assert info.value.exit_code == EXIT_USAGE
    for needle in (str(tmp_path / "nope"), "does not exist", "zqfdc", "nextqsm-weights.tar",
                   "--nextqsm-weights", nx.WEIGHTS_ENV):
        assert needle in message
    monkeypatch.delenv(nx.WEIGHTS_ENV)
    monkeypatch.setattr(weights, "DEFAULT_WEIGHTS_DIR", tmp_path / "opt")
    with pytest.raises(UsageError, match="default location"):
        nx.find_weights()
    assert nx.find_weights(checkpoint) == checkpoint.resolve()


def test_find_weights_names_the_missing_file(checkpoint, tmp_path):
    for name in nx.REQUIRED_FILES:
        if name != weights.VN_LAMBDAS:
            (tmp_path / name).write_bytes((checkpoint / name).read_bytes())
    with pytest.raises(UsageError) as info:
        nx.find_weights(str(tmp_path))
    assert f"lacks {weights.VN_LAMBDAS};" in str(info.value) and str(tmp_path) in str(info.value)


def test_import_without_tensorflow():
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "from bids_app.errors import UsageError\n"
        "import bids_app.interfaces.nextqsm as nx\n"
        "try:\n"
        "    nx.check_tensorflow()\n"
        "except UsageError as error:\n"
        "    print('usage', error.exit_code, 'qsmapp[nextqsm]' in str(error))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["usage", str(EXIT_USAGE), "True"]
