"""Plots for EEG -> fMRI translation: predicted vs true parcel BOLD, and brain maps of parcels.

Everything works offline on a headless machine: matplotlib's Agg backend (unless a backend was
already chosen), and nilearn's MNI152 template shipped inside its wheel as the background of
brain maps (no atlas or template is downloaded; the parcellation is the labels image that came
with the data, e.g. the synthetic dataset's ``derivatives/neurofm-synth/atlas/*_dseg.nii.gz``).

* :func:`plot_bold_predictions`: time courses of a few parcels, true and predicted, with each
  parcel's Pearson r in its title.
* :func:`parcel_values_to_img`: one value per parcel -> a NIfTI image holding that value in
  every voxel of the parcel (the image :func:`plot_parcel_map` draws; exposed so it can be
  saved or checked).
* :func:`plot_parcel_map`: that image on the MNI152 template (``plot_stat_map``, slices) or as
  a glass brain (``plot_glass_brain``), e.g. per-parcel r of a model.

Examples
--------
>>> ev, pred = model.predictions(rec, split="test")
>>> bold = rec["bold"].load()
>>> plot_bold_predictions(ev.timestamps, ev.values, pred, bold.channels, path="bold.png")
>>> r = model.evaluate([rec])[rec.id]["r_per_parcel"]
>>> plot_parcel_map(r, atlas_path, labels=bold.channel_info["label"], path="r_map.png")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from neurofm.errors import InvalidDataError
from neurofm.metrics import pearson_r
from neurofm.viz.figures import pyplot, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "parcel_values_to_img",
    "plot_band_attention",
    "plot_bold_predictions",
    "plot_parcel_map",
]


# --------------------------------------------------------------------------------------------
# time courses
# --------------------------------------------------------------------------------------------


def _pick_parcels(
    parcels: Sequence[int | str] | None, names: np.ndarray, r: np.ndarray, max_parcels: int
) -> list[int]:
    if parcels is None:
        # A spread from the best to the worst parcel, so the figure shows the range of fits.
        order = np.argsort(-np.nan_to_num(r, nan=-np.inf))
        n = min(max_parcels, len(order))
        picks = np.unique(np.linspace(0, len(order) - 1, n).round().astype(np.int64))
        return [int(order[i]) for i in picks]
    out = []
    for p in parcels:
        if isinstance(p, str):
            hits = np.flatnonzero(names == p)
            if hits.size == 0:
                raise InvalidDataError(f"plot_bold_predictions: parcels: no parcel named {p!r}")
            out.append(int(hits[0]))
        elif isinstance(p, int | np.integer) and 0 <= p < len(names):
            out.append(int(p))
        else:
            raise InvalidDataError(
                f"plot_bold_predictions: parcels: {p!r} is neither a parcel name nor an index "
                f"in [0, {len(names)})"
            )
    return out


def plot_bold_predictions(
    timestamps: Any,
    true: Any,
    pred: Any,
    parcel_names: Sequence[str],
    parcels: Sequence[int | str] | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    max_parcels: int = 4,
    title: str | None = None,
) -> Figure:
    """True and predicted BOLD of a few parcels, with each parcel's Pearson r in its title.

    Parameters
    ----------
    timestamps : array-like, shape (T,)
        Volume times, s (e.g. ``evaluation_targets(...).timestamps``). Gaps longer than 1.5
        volumes (between evaluation segments) are left blank rather than joined by a line.
    true, pred : array-like, shape (T, P)
        Measured and predicted BOLD.
    parcel_names : sequence of str, length P
        Names of the columns (e.g. ``rec["bold"].channels``).
    parcels : sequence of int or str, optional
        Parcels to show, by index or name. Default: ``max_parcels`` of them spread from the
        best-predicted to the worst.
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.
    max_parcels : int
        How many parcels the default picks.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    t = np.asarray(timestamps, dtype=np.float64)
    y = np.asarray(true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    names = np.asarray([str(n) for n in parcel_names], dtype=object)
    if y.ndim != 2 or y.shape != p.shape or y.shape[0] != t.shape[0] or len(t) < 2:
        raise InvalidDataError(
            "plot_bold_predictions: need timestamps (T,) and true/pred (T, P) with T >= 2, got "
            f"{t.shape}, {y.shape}, {p.shape}"
        )
    if len(names) != y.shape[1]:
        raise InvalidDataError(
            f"plot_bold_predictions: {len(names)} parcel names for {y.shape[1]} columns"
        )
    r = pearson_r(y, p)
    chosen = _pick_parcels(parcels, names, r, max_parcels)
    if not chosen:
        raise InvalidDataError("plot_bold_predictions: parcels: nothing to show")
    # A NaN after each gap breaks the line there.
    step = float(np.median(np.diff(t)))
    gaps = np.flatnonzero(np.diff(t) > 1.5 * step) + 1
    t_plot = np.insert(t, gaps, np.nan)
    plt = pyplot()
    fig, axes = plt.subplots(
        len(chosen), 1, figsize=(9, 1.9 * len(chosen) + 0.6), sharex=True, squeeze=False
    )
    for ax, j in zip(axes[:, 0], chosen, strict=True):
        ax.plot(t_plot, np.insert(y[:, j], gaps, np.nan), color="k", lw=1.2, label="measured")
        ax.plot(
            t_plot, np.insert(p[:, j], gaps, np.nan), color="tab:red", lw=1.0, label="predicted"
        )
        ax.set_title(f"{names[j]}  (r = {r[j]:.2f})", fontsize=9)
        ax.set_ylabel("BOLD", fontsize=8)
    axes[0, 0].legend(fontsize=7, frameon=False, loc="upper right")
    axes[-1, 0].set_xlabel("time in recording (s)")
    fig.suptitle(
        title or f"BOLD, measured vs predicted (mean r over {len(r)} parcels: {np.nanmean(r):.2f})",
        fontsize=10,
    )
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    return fig


# --------------------------------------------------------------------------------------------
# brain maps
# --------------------------------------------------------------------------------------------


def _load_labels_img(atlas_img: Any) -> Any:
    import nibabel as nib

    if isinstance(atlas_img, str | os.PathLike):
        if not Path(atlas_img).is_file():
            raise InvalidDataError(f"{atlas_img}: atlas: no such labels image")
        try:
            atlas_img = nib.load(str(atlas_img))
        except Exception as exc:  # nibabel raises several types for a non-NIfTI file
            raise InvalidDataError(f"{atlas_img}: atlas: not a NIfTI image ({exc})") from None
    if not hasattr(atlas_img, "affine") or len(atlas_img.shape) != 3:
        raise InvalidDataError(
            f"atlas: expected a 3-D labels image (integer label per voxel, 0 = background), got "
            f"{type(atlas_img).__name__} of shape {getattr(atlas_img, 'shape', None)}"
        )
    return atlas_img


def parcel_values_to_img(
    values: Any, atlas_img: Any, labels: Sequence[int] | None = None, background: float = 0.0
) -> Any:
    """An image holding ``values[i]`` in every voxel of parcel ``labels[i]`` of a labels atlas.

    Parameters
    ----------
    values : array-like, shape (P,)
        One value per parcel (e.g. per-parcel Pearson r). NaN values are drawn as background.
    atlas_img : str, Path or nibabel image
        3-D labels image: an integer label per voxel, 0 for background.
    labels : sequence of int, optional
        The atlas label of each value (e.g. ``rec["bold"].channel_info["label"]``, which
        follows the parcels the reader kept). Default: the atlas' non-zero labels in
        increasing order, the order of nilearn's ``NiftiLabelsMasker`` output.
    background : float
        Value of voxels outside every listed parcel.

    Returns
    -------
    nibabel.Nifti1Image
        float32, on the atlas' grid and affine.

    Raises
    ------
    InvalidDataError
        The atlas is not a 3-D image; the numbers of values and labels differ; a label is
        not in the atlas.
    """
    import nibabel as nib

    img = _load_labels_img(atlas_img)
    where = getattr(img, "get_filename", lambda: None)() or "atlas"
    atlas = np.asarray(img.dataobj)
    if not np.allclose(atlas, np.round(atlas)):
        raise InvalidDataError(f"{where}: atlas values must be integer labels")
    atlas = np.round(atlas).astype(np.int64)
    present = np.unique(atlas[atlas != 0])
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    labels_arr = present if labels is None else np.asarray(labels).astype(np.int64).reshape(-1)
    if len(labels_arr) != len(values):
        raise InvalidDataError(
            f"{where}: {len(values)} values for {len(labels_arr)} parcels"
            + (" (the atlas' non-zero labels)" if labels is None else " (labels)")
        )
    missing = np.setdiff1d(labels_arr, present)
    if missing.size:
        raise InvalidDataError(
            f"{where}: labels {missing.tolist()[:10]} are not in the atlas (it has "
            f"{len(present)} labels, {present.min() if present.size else '-'}.."
            f"{present.max() if present.size else '-'})"
        )
    # Look-up table from label value to the value to draw: one pass over the voxels.
    lut = np.full(int(max(atlas.max(), labels_arr.max(initial=0))) + 1, background, np.float64)
    lut[labels_arr] = np.where(np.isfinite(values), values, background)
    out = np.where(atlas > 0, lut[np.clip(atlas, 0, None)], background).astype(np.float32)
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    return nib.Nifti1Image(out, img.affine, header)


def plot_parcel_map(
    values: Any,
    atlas_img: Any,
    path: str | os.PathLike[str] | None = None,
    title: str = "per-parcel r",
    *,
    labels: Sequence[int] | None = None,
    kind: Literal["stat", "glass"] = "stat",
    threshold: float | None = None,
    vmax: float | None = None,
    cmap: str = "RdBu_r",
) -> Figure:
    """A brain map of one value per parcel (e.g. per-parcel r) on the MNI152 template.

    Parameters
    ----------
    values : array-like, shape (P,)
        One value per parcel.
    atlas_img : str, Path or nibabel image
        The labels image the parcels come from, in MNI space (its grid may be coarse: the map
        is resampled onto the template by nilearn).
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.
    title : str
        Figure title.
    labels : sequence of int, optional
        Atlas label of each value (see :func:`parcel_values_to_img`).
    kind : {"stat", "glass"}
        Orthogonal slices on the template (``nilearn.plotting.plot_stat_map``) or a glass
        brain (``plot_glass_brain``).
    threshold : float, optional
        Values with a smaller magnitude are not drawn (default: draw every parcel).
    vmax : float, optional
        Colour scale limit (symmetric); default the largest magnitude.
    cmap : str
        Matplotlib colour map (diverging, as r can be negative).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if kind not in ("stat", "glass"):
        raise InvalidDataError(f"plot_parcel_map: kind must be 'stat' or 'glass', got {kind!r}")
    plt = pyplot()
    from nilearn import plotting
    from nilearn.datasets import load_mni152_template

    img = parcel_values_to_img(values, atlas_img, labels=labels)
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if vmax is None:
        vmax = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    fig = plt.figure(figsize=(8, 3.2))
    common = {
        "threshold": threshold if threshold is not None else 1e-6,  # hide background only
        "vmax": vmax,
        "cmap": cmap,
        "colorbar": True,
        "title": title,
        "figure": fig,
    }
    if kind == "stat":
        # The template ships inside nilearn's wheel: no download.
        bg = load_mni152_template(resolution=2)
        plotting.plot_stat_map(img, bg_img=bg, display_mode="ortho", **common)
    else:
        plotting.plot_glass_brain(img, display_mode="lzry", plot_abs=False, **common)
    save_png(fig, path, dpi=110)
    return fig


# --------------------------------------------------------------------------------------------
# attention over wavelet bands
# --------------------------------------------------------------------------------------------


def plot_band_attention(
    weights: Any,
    bands: Sequence[str],
    path: str | os.PathLike[str] | None = None,
    *,
    truth: str | None = None,
    title: str = "attention over wavelet bands",
) -> Figure:
    """Bars of the mean attention a model puts on each wavelet band (e.g. SAMBA's ``alpha``).

    Parameters
    ----------
    weights : array-like, shape (B,)
        One weight per band (they need not sum to one).
    bands : sequence of str
        The bands' names, same order (e.g. :func:`neurofm.evaluation.reports.band_ranges`).
    path : str or Path, optional
        Where to save a PNG (written atomically); the figure is returned either way.
    truth : str, optional
        A band to mark as the one known to drive the signal (synthetic data).
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InvalidDataError
        ``weights`` and ``bands`` differ in length, or ``truth`` is not a band.
    """
    w = np.asarray(weights, dtype=np.float64).ravel()
    bands = [str(b) for b in bands]
    if len(w) != len(bands):
        raise InvalidDataError(
            f"plot_band_attention: {len(w)} weights for {len(bands)} bands ({', '.join(bands)})"
        )
    if truth is not None and truth not in bands:
        raise InvalidDataError(f"plot_band_attention: truth {truth!r} is not one of {bands}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.0), layout="constrained")
    colours = ["tab:red" if b == truth else "tab:blue" for b in bands]
    ax.bar(range(len(w)), w, color=colours)
    ax.set_xticks(range(len(w)), bands, fontsize=8.5)
    ax.set_ylabel("mean attention")
    if truth is not None:
        ax.set_title(f"{title}\n(red: the band that drives the BOLD)", fontsize=10)
    else:
        ax.set_title(title, fontsize=10)
    save_png(fig, path, dpi=110)
    return fig
