"""Brain plots for EEG -> fMRI translation: BOLD time courses and per-parcel maps, offline."""

from __future__ import annotations

import matplotlib.figure
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pytest

from neurofm.errors import InvalidDataError
from neurofm.viz.brain import parcel_values_to_img, plot_bold_predictions, plot_parcel_map

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def parcellation():
    """The synthetic dataset's atlas: 20 k-means parcels of the MNI152 mask, 6 mm voxels."""
    from neurofm.synthetic.eeg_fmri import make_parcellation

    return make_parcellation(n_parcels=20, voxel_size=6.0, seed=0)


def _tiny_atlas() -> nib.Nifti1Image:
    labels = np.zeros((4, 3, 2), dtype=np.int32)
    labels[0, :, :] = 5
    labels[1, 0, 0] = 2
    labels[2:, 1:, :] = 1
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    return nib.Nifti1Image(labels, affine)


# --------------------------------------------------------------------------------------------
# parcel values -> image
# --------------------------------------------------------------------------------------------


def test_values_land_in_their_parcels_default_order():
    atlas = _tiny_atlas()
    img = parcel_values_to_img([0.1, 0.2, 0.5], atlas)  # labels 1, 2, 5 in increasing order
    data = np.asarray(img.dataobj)
    labels = np.asarray(atlas.dataobj)
    assert img.shape == atlas.shape and data.dtype == np.float32
    np.testing.assert_array_equal(img.affine, atlas.affine)
    np.testing.assert_allclose(data[labels == 1], 0.1, rtol=1e-6)
    np.testing.assert_allclose(data[labels == 2], 0.2, rtol=1e-6)
    np.testing.assert_allclose(data[labels == 5], 0.5, rtol=1e-6)
    assert np.all(data[labels == 0] == 0)


def test_explicit_labels_nan_and_background():
    atlas = _tiny_atlas()
    labels = np.asarray(atlas.dataobj)
    # the reader's order (channel_info['label']) need not be increasing, nor cover every parcel
    img = parcel_values_to_img([-0.3, np.nan], atlas, labels=[5, 1], background=-9.0)
    data = np.asarray(img.dataobj)
    np.testing.assert_allclose(data[labels == 5], -0.3, rtol=1e-6)
    assert np.all(data[labels == 1] == -9.0)  # NaN is drawn as background
    assert np.all(data[labels == 2] == -9.0)  # a parcel without a value
    assert np.all(data[labels == 0] == -9.0)


def test_from_a_file_and_on_the_synthetic_atlas(tmp_path, parcellation):
    path = tmp_path / "atlas_dseg.nii.gz"
    nib.save(parcellation.labels_img, path)
    values = np.linspace(-0.5, 0.9, parcellation.n_parcels)
    img = parcel_values_to_img(values, path)
    data, labels = np.asarray(img.dataobj), parcellation.labels
    for k in range(1, parcellation.n_parcels + 1):
        voxels = data[labels == k]
        assert voxels.size > 0
        np.testing.assert_allclose(voxels, values[k - 1], rtol=1e-6)


@pytest.mark.parametrize(
    ("values", "labels", "match"),
    [
        ([0.1, 0.2], None, "2 values for 3 parcels"),
        ([0.1, 0.2], [1, 7], r"labels \[7\] are not in the atlas"),
        ([0.1], [1, 2], "1 values for 2 parcels"),
    ],
)
def test_bad_values_or_labels_are_clear_errors(values, labels, match):
    with pytest.raises(InvalidDataError, match=match):
        parcel_values_to_img(values, _tiny_atlas(), labels=labels)


def test_atlas_that_is_not_a_labels_image(tmp_path):
    with pytest.raises(InvalidDataError, match="no such labels image"):
        parcel_values_to_img([1.0], tmp_path / "missing.nii.gz")
    four_d = nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.float32), np.eye(4))
    with pytest.raises(InvalidDataError, match="3-D labels image"):
        parcel_values_to_img([1.0], four_d)


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------


def _bold(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    t = 4.0 + 2.0 * np.arange(60)
    t[30:] += 40.0  # two evaluation segments with a gap between them
    true = rng.standard_normal((60, 5))
    noise = np.array([0.1, 0.5, 1.0, 3.0, 10.0])  # parcels from well to badly predicted
    pred = true + noise * rng.standard_normal((60, 5))
    return t, true, pred, [f"parcel-{i}" for i in range(5)]


def test_plot_bold_predictions_writes_png_with_r_in_titles(tmp_path):
    t, true, pred, names = _bold()
    path = tmp_path / "out" / "bold.png"
    fig = plot_bold_predictions(t, true, pred, names, parcels=["parcel-0", 3], path=path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    titles = [ax.get_title() for ax in fig.axes]
    r0 = np.corrcoef(true[:, 0], pred[:, 0])[0, 1]
    r3 = np.corrcoef(true[:, 3], pred[:, 3])[0, 1]
    assert titles == [f"parcel-0  (r = {r0:.2f})", f"parcel-3  (r = {r3:.2f})"]
    # the gap between segments is not bridged: a NaN breaks each line there
    line = fig.axes[0].get_lines()[0]
    assert np.isnan(line.get_xdata()).sum() == 1


def test_plot_bold_predictions_default_spreads_best_to_worst():
    t, true, pred, names = _bold()
    fig = plot_bold_predictions(t, true, pred, names, max_parcels=3)
    titles = [ax.get_title().split()[0] for ax in fig.axes]
    assert titles == ["parcel-0", "parcel-2", "parcel-4"]  # best, middle, worst


def test_plot_bold_predictions_errors():
    t, true, pred, names = _bold()
    with pytest.raises(InvalidDataError, match="no parcel named 'nope'"):
        plot_bold_predictions(t, true, pred, names, parcels=["nope"])
    with pytest.raises(InvalidDataError, match="4 parcel names for 5 columns"):
        plot_bold_predictions(t, true, pred, names[:4])
    with pytest.raises(InvalidDataError, match=r"true/pred \(T, P\)"):
        plot_bold_predictions(t, true, pred[:, :3], names)


@pytest.mark.parametrize("kind", ["stat", "glass"])
def test_plot_parcel_map_offline(tmp_path, parcellation, kind):
    values = np.linspace(-0.4, 0.8, parcellation.n_parcels)
    path = tmp_path / f"map_{kind}.png"
    fig = plot_parcel_map(values, parcellation.labels_img, path=path, title="r", kind=kind)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000  # a drawn brain, not an empty canvas
    assert isinstance(fig, matplotlib.figure.Figure)


def test_plot_parcel_map_rejects_unknown_kind(parcellation):
    with pytest.raises(InvalidDataError, match="kind must be"):
        plot_parcel_map(np.zeros(20), parcellation.labels_img, kind="surface")


def test_band_attention_bars_and_the_true_band():
    from neurofm.viz.brain import plot_band_attention

    bands = ["D1 32-64 Hz", "D2 16-32 Hz", "D3 8-16 Hz", "A3 0-8 Hz"]
    fig = plot_band_attention([0.4, 0.3, 0.2, 0.1], bands, truth="D1 32-64 Hz")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, [0.4, 0.3, 0.2, 0.1])
    assert [t.get_text() for t in ax.get_xticklabels()] == bands
    red = [p.get_facecolor() for p in ax.patches]
    assert red[0] != red[1] and red[1] == red[2]  # only the true band stands out
    with pytest.raises(InvalidDataError, match="3 weights for 4 bands"):
        plot_band_attention([1, 2, 3], bands)
    with pytest.raises(InvalidDataError, match="truth 'gamma' is not one of"):
        plot_band_attention([1, 2, 3, 4], bands, truth="gamma")
