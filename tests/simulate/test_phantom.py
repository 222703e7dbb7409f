"""Numerical head phantom: labels, anatomy, tissue table, determinism, subject variation, geometry."""

from __future__ import annotations


import numpy as np
import pytest
from scipy import ndimage

from bids_app.algorithms import geometry
from bids_app.simulate.phantom import (
    CHI_AIR_PPM,
    DEFAULT_SHAPE,
    LABELS,
    TISSUE_PROPERTIES,
    field_source,
    grid_affine,
    label_index,
    make_head,
)

PAIRED = ("caudate", "putamen", "globus_pallidus", "thalamus", "substantia_nigra", "red_nucleus")


@pytest.fixture(scope="module")
def head():
    return make_head(rng=0)


def _centroid_mm(head, name):
    index = np.argwhere(head.labels == label_index(name)).mean(axis=0)
    return (index - (np.asarray(head.shape) - 1) / 2.0) * np.asarray(head.voxel_size)


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_tissue_table_covers_every_label_with_literature_ordering():
    assert list(LABELS) == list(range(len(LABELS)))
    for name in LABELS.values():
        assert set(TISSUE_PROPERTIES[name]) == {"chi_ppm", "r2star_hz", "m0", "t1w_intensity"}
    chi = {name: props["chi_ppm"] for name, props in TISSUE_PROPERTIES.items()}
    r2 = {name: props["r2star_hz"] for name, props in TISSUE_PROPERTIES.items()}
    # susceptibility ordering of deep grey matter (Deistung 2013) and the sign of WM, calcification, bone
    assert chi["globus_pallidus_left"] > chi["substantia_nigra_left"] > chi["red_nucleus_left"] > chi["putamen_left"]
    assert chi["putamen_left"] > chi["caudate_left"] > chi["thalamus_left"] > chi["grey_matter"] > chi["csf"] == 0.0
    assert chi["white_matter"] < 0 and -1.0 <= chi["calcification"] <= -0.3 and chi["skull"] < -1.5
    assert 0.3 <= chi["vein"] <= 0.45 and 1.0 <= chi["microbleed"] <= 2.0
    assert chi["sinus"] == pytest.approx(CHI_AIR_PPM) == pytest.approx(9.4)
    assert r2["csf"] < r2["grey_matter"] < r2["white_matter"] < r2["putamen_left"] < r2["globus_pallidus_left"]
    assert r2["vein"] >= 50 and r2["microbleed"] > 100
    for tissue in PAIRED:
        assert TISSUE_PROPERTIES[f"{tissue}_left"] == TISSUE_PROPERTIES[f"{tissue}_right"]


def test_default_head_has_every_label_with_plausible_volumes(head):
    assert head.shape == DEFAULT_SHAPE and head.voxel_size == (1.5, 1.5, 1.5)
    assert head.labels.dtype == np.int16 and head.chi.dtype == np.float32
    assert head.brain_mask.dtype == bool and head.head_mask.dtype == bool
    ml = np.prod(head.voxel_size) / 1e3
    volumes = {name: (head.labels == index).sum() * ml for index, name in LABELS.items()}
    assert all(volumes[name] > 0 for name in LABELS.values()), volumes
    brain_ml = head.brain_mask.sum() * ml
    assert 850 < brain_ml < 1500, brain_ml
    assert 150 < volumes["grey_matter"] < 600 and 350 < volumes["white_matter"] < 900
    for tissue, low, high in (("caudate", 1.2, 6), ("putamen", 2, 8), ("globus_pallidus", 0.5, 3),
                              ("thalamus", 2.5, 9), ("substantia_nigra", 0.1, 1), ("red_nucleus", 0.1, 1)):
        left, right = volumes[f"{tissue}_left"], volumes[f"{tissue}_right"]
        assert low < left < high and low < right < high, (tissue, left, right)
        assert abs(left - right) < 0.1 * max(left, right), (tissue, left, right)
        # left is x < 0 (RAS voxel order), the right one its mirror image
        assert _centroid_mm(head, f"{tissue}_left")[0] < -2 < 2 < _centroid_mm(head, f"{tissue}_right")[0]
    assert volumes["vein"] > 2 and volumes["calcification"] > 0.02 and volumes["microbleed"] > 0.02
    assert 2 < volumes["sinus"] < 15


def test_anatomy_relative_positions(head):
    c = {t: _centroid_mm(head, f"{t}_right") for t in PAIRED}
    assert c["putamen"][0] > c["globus_pallidus"][0] > c["thalamus"][0] > c["red_nucleus"][0]  # lateral → medial
    assert c["caudate"][1] > c["thalamus"][1] and c["putamen"][1] > c["thalamus"][1]  # thalamus posterior
    assert c["substantia_nigra"][2] < c["thalamus"][2] and c["red_nucleus"][2] < c["thalamus"][2]  # midbrain below
    assert c["substantia_nigra"][0] > c["red_nucleus"][0]  # SN lateral to RN
    sinus = _centroid_mm(head, "sinus")
    brain = np.argwhere(head.brain_mask).mean(axis=0)
    brain = (brain - (np.asarray(head.shape) - 1) / 2.0) * 1.5
    assert sinus[1] > brain[1] + 25 and sinus[2] < brain[2] - 30  # anterior and inferior: under the frontal lobe


def test_layers_enclose_the_brain(head):
    labels = head.labels
    # the brain never touches air; bone separates brain from the sinus
    near_brain = ndimage.binary_dilation(head.brain_mask, iterations=1)
    assert not np.any(near_brain & (labels == label_index("background")))
    assert not np.any(near_brain & (labels == label_index("sinus")))
    # outside the brain mask, inside the head: CSF, skull, scalp, sinus or a vein (SSS, cortical vein)
    outer = head.head_mask & ~head.brain_mask
    allowed = [label_index(n) for n in ("csf", "skull", "scalp", "sinus", "vein", "grey_matter")]
    assert np.isin(labels[outer], allowed).all()
    assert (labels[outer] == label_index("grey_matter")).sum() < 0.01 * outer.sum()
    # the skull is a closed shell: the head minus bone splits into an inside and an outside component
    inside = ndimage.binary_fill_holes(labels == label_index("skull")) & ~(labels == label_index("skull"))
    assert inside[head.brain_mask].all()
    # the whole head fits in the default field of view
    assert not head.head_mask[[0, -1]].any() and not head.head_mask[:, [0, -1]].any()
    assert not head.head_mask[:, :, [0, -1]].any()


def test_maps_equal_the_table_per_label(head):
    for index, name in LABELS.items():
        inside = head.labels == index
        for attribute, key in (("chi", "chi_ppm"), ("r2star", "r2star_hz"), ("m0", "m0"), ("t1w", "t1w_intensity")):
            values = getattr(head, attribute)[inside]
            expected = TISSUE_PROPERTIES[name][key]
            if name == "background" and attribute == "chi":
                expected = 0.0  # no tissue: χ maps are 0 outside the head
            assert np.array_equal(values, np.full(values.shape, expected, dtype=np.float32)), (name, attribute)
    assert np.array_equal(head.head_mask, head.labels != 0)


def test_field_source_is_relative_to_air(head):
    source = field_source(head)
    assert np.all(source[~head.head_mask] == 0)
    assert np.all(source[head.labels == label_index("sinus")] == 0)
    wm = head.labels == label_index("white_matter")
    assert np.allclose(source[wm], TISSUE_PROPERTIES["white_matter"]["chi_ppm"] - CHI_AIR_PPM)


def test_deterministic_for_a_seed_and_rng_unused_without_warp():
    kwargs = dict(shape=(56, 64, 48), scale=1.04, rotation_deg=(4.0, -3.0, 5.0), warp_amplitude_mm=3.0)
    a = make_head(rng=np.random.default_rng(7), **kwargs)
    b = make_head(rng=np.random.default_rng(7), **kwargs)
    for attribute in ("labels", "chi", "r2star", "m0", "t1w", "brain_mask", "head_mask"):
        assert np.array_equal(getattr(a, attribute), getattr(b, attribute)), attribute
    rigid_a = make_head(shape=(56, 64, 48), rng=1)
    rigid_b = make_head(shape=(56, 64, 48), rng=2)
    assert np.array_equal(rigid_a.labels, rigid_b.labels)


def test_subject_variation_changes_geometry_but_not_the_label_set():
    heads = []
    for seed in (11, 12):
        rng = np.random.default_rng(seed)
        heads.append(make_head(shape=(56, 64, 48), rng=rng, scale=float(rng.uniform(0.93, 1.07)),
                               rotation_deg=tuple(rng.uniform(-6, 6, size=3)), warp_amplitude_mm=3.0))
    a, b = heads
    assert set(np.unique(a.labels)) == set(np.unique(b.labels)) == set(LABELS)
    brain_dice = _dice(a.brain_mask, b.brain_mask)
    assert 0.6 < brain_dice < 0.98, brain_dice
    deep = [label_index(f"{t}_{s}") for t in ("putamen", "thalamus", "caudate") for s in ("left", "right")]
    deep_dice = _dice(np.isin(a.labels, deep), np.isin(b.labels, deep))
    assert 0.3 < deep_dice < 0.95, deep_dice
    assert not np.array_equal(a.labels, b.labels)


def test_warp_is_smooth_and_small():
    base = make_head(shape=(56, 64, 48), rng=0)
    warped = make_head(shape=(56, 64, 48), rng=3, warp_amplitude_mm=3.0)
    # a 3 mm RMS warp moves the brain's centroid by at most a few mm and keeps its volume within 10 %
    shift = np.abs(np.argwhere(base.brain_mask).mean(0) - np.argwhere(warped.brain_mask).mean(0)) * 3.0
    assert shift.max() < 6.0
    assert abs(warped.brain_mask.sum() / base.brain_mask.sum() - 1) < 0.1
    # the brain stays one connected component
    assert ndimage.label(warped.brain_mask)[1] == 1


def test_physical_size_is_resolution_independent():
    coarse = make_head(shape=(56, 64, 48), voxel_size=(3.0, 3.0, 3.0))
    fine = make_head(shape=(84, 96, 72), voxel_size=(2.0, 2.0, 2.0))
    ml = lambda h, m: m.sum() * np.prod(h.voxel_size) / 1e3  # noqa: E731
    assert ml(coarse, coarse.brain_mask) == pytest.approx(ml(fine, fine.brain_mask), rel=0.05)
    assert ml(coarse, coarse.head_mask) == pytest.approx(ml(fine, fine.head_mask), rel=0.05)


def test_custom_shape_without_voxel_size_fits_the_head():
    head = make_head(shape=(48, 64, 40))
    assert head.voxel_size == pytest.approx((3.6, 3.6, 3.6))  # max(168/48, 192/64, 144/40)
    assert not head.head_mask[[0, -1]].any() and not head.head_mask[:, [0, -1]].any()
    small = make_head(shape=(40, 40, 40), voxel_size=(1.5, 1.5, 1.5))  # a field of view inside the brain
    assert small.brain_mask.mean() > 0.5


def test_scale_changes_the_volume_as_its_cube():
    a = make_head(shape=(56, 64, 48), voxel_size=(3.0, 3.0, 3.0), scale=0.95)
    b = make_head(shape=(56, 64, 48), voxel_size=(3.0, 3.0, 3.0), scale=1.05)
    assert b.brain_mask.sum() / a.brain_mask.sum() == pytest.approx((1.05 / 0.95) ** 3, rel=0.05)


def test_rotation_moves_structures_as_a_rigid_rotation():
    shape, vs = (56, 64, 48), (3.0, 3.0, 3.0)
    base = make_head(shape=shape, voxel_size=vs)
    rotated = make_head(shape=shape, voxel_size=vs, rotation_deg=(0.0, 0.0, 10.0))
    c0 = _centroid_mm(base, "putamen_right")
    c1 = _centroid_mm(rotated, "putamen_right")
    angle = np.radians(10.0)
    expected = np.array([c0[0] * np.cos(angle) - c0[1] * np.sin(angle), c0[0] * np.sin(angle) + c0[1] * np.cos(angle)])
    assert np.allclose(c1[:2], expected, atol=1.5)


def test_grid_affine_centre_and_oblique_b0_direction():
    shape, vs = (112, 128, 96), (1.5, 1.5, 1.5)
    affine = grid_affine(shape, vs)
    assert np.allclose(affine @ np.r_[(np.asarray(shape) - 1) / 2.0, 1.0], [0, 0, 0, 1])
    assert np.allclose(geometry.b0_direction(affine), (0, 0, 1))
    tilted = grid_affine(shape, vs, oblique_degrees=20.0)
    assert np.allclose(geometry.voxel_sizes(tilted), vs)
    assert geometry.obliquity_degrees(tilted) == pytest.approx(20.0, abs=1e-6)
    b0 = np.asarray(geometry.b0_direction(tilted))
    assert np.allclose(np.abs(b0), (0.0, np.sin(np.radians(20)), np.cos(np.radians(20))), atol=1e-9)


@pytest.mark.parametrize("kwargs", [
    dict(shape=(10, 10)), dict(voxel_size=(1.0, 0.0, 1.0)), dict(scale=0.1), dict(scale=np.nan),
    dict(warp_amplitude_mm=-1.0), dict(rotation_deg=(1.0, 2.0)),
    dict(shape=(32, 32, 32), voxel_size=(1.0, 1.0, 1.0), shift_mm=(500.0, 0.0, 0.0)),
])
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        make_head(**kwargs)


def test_label_index_unknown_name():
    assert label_index("vein") == 16
    with pytest.raises(ValueError, match="unknown label"):
        label_index("hippocampus")


def test_default_head_with_every_deformation():
    """Runs on the default grid (its speed is measured in benchmarks/bench_wallclock.py)."""
    head = make_head(rng=5, scale=1.05, rotation_deg=(3.0, -4.0, 5.0), warp_amplitude_mm=3.0)
    assert head.labels.any() and head.labels.shape == make_head(rng=5).labels.shape
