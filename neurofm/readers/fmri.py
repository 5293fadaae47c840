"""fMRI volumes -> parcel time series (nilearn), and simultaneous EEG-fMRI runs -> one Recording.

:func:`read_fmri` reduces a 4-D NIfTI (BIDS ``_bold.nii.gz`` or any 4-D image) to one time series
per parcel of an atlas with nilearn's maskers: ``NiftiLabelsMasker`` for a labels image (3-D,
integer labels), ``NiftiMapsMasker`` for probabilistic maps (4-D). Confounds can be regressed
(fMRIPrep's through ``nilearn.interfaces.fmriprep.load_confounds``, or any table), and the
series standardised as nilearn does (``standardize=``). The result is a :class:`RegularSeries`
named ``bold`` at rate 1/TR whose channels are the parcels, with each parcel's label value and
centroid (``x``, ``y``, ``z`` in mm, atlas world space: nodes for connectivity graphs).

:func:`read_eeg_fmri` reads an EEG file and a BOLD file of one simultaneous run and aligns them
on the scanner's volume markers in the EEG (after checking that there is one marker per volume),
or on their acquisition times when the EEG has no markers. :func:`read_bids_run` reads one run
found by :func:`neurofm.sources.bids.find_runs`: EEG, BOLD, or both.

Atlases come from a NIfTI path (with names in a BIDS ``dseg.tsv`` look-up table beside it:
columns ``index`` and ``name``). nilearn's atlas fetchers download, so they are not called here;
when online, fetch once and pass the image and its labels::

    from nilearn.datasets import fetch_atlas_schaefer_2018
    atlas = fetch_atlas_schaefer_2018(n_rois=200, yeo_networks=17)   # downloads once
    rec = read_fmri("sub-01_task-rest_bold.nii.gz", atlas=atlas.maps,
                    labels=[str(x) for x in atlas.labels])
    # probabilistic: fetch_atlas_difumo(dimension=64).maps -> NiftiMapsMasker automatically
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import neurofm
from neurofm.data.recording import Metadata, Recording, provenance_from
from neurofm.data.signals import Intervals, RegularSeries, Signal
from neurofm.errors import InvalidDataError, NeuroFMError, ReaderError
from neurofm.readers.boundary import reader_boundary
from neurofm.sources.bids import (
    NIFTI_EXTENSIONS,
    BIDSRun,
    acquisition_time,
    bids_root_of,
    entities_of,
    entity_string,
    files_sha256,
    read_json,
    sidecar,
)

log = logging.getLogger(__name__)

__all__ = ["read_bids_run", "read_eeg_fmri", "read_fmri"]

_TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}
_STANDARDIZE = ("zscore_sample", "zscore", "psc")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _load_image(path: Path, what: str) -> Any:
    import nibabel as nib

    if path.is_dir():
        raise ReaderError(f"{path}: is a folder, expected a NIfTI {what} (.nii or .nii.gz)")
    if not path.is_file():
        raise ReaderError(f"{path}: no such {what} file")
    try:
        img = nib.load(str(path))
        img.header.get_data_shape()
    except Exception as exc:  # nibabel raises ImageFileError, OSError, EOFError...
        raise ReaderError(f"{path}: not a readable NIfTI {what} ({_reason(exc)})") from None
    return _checked_data(path, img, what)


def _checked_data(path: Path, img: Any, what: str) -> Any:
    """The image, its voxel data checked against the header's shape and type.

    An uncompressed file shorter than ``vox_offset + voxels x bytes`` is cut short (nibabel
    would fail later, deep inside nilearn, or map fewer bytes); a gzipped one is decompressed
    here, once, into an in-memory image, so a truncated or corrupt stream is an error that
    names the file, not an EOFError from the masker.
    """
    header = img.header
    try:
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = header.get_data_dtype()
        # Where nibabel reads the data from (a single .nii never starts before byte 352,
        # whatever vox_offset says).
        offset = int(getattr(img.dataobj, "offset", header.get_data_offset()))
    except Exception as exc:
        raise ReaderError(f"{path}: header: not a valid NIfTI {what} ({_reason(exc)})") from None
    if any(n <= 0 for n in shape):
        raise ReaderError(f"{path}: header: dimensions must be > 0, got {shape}")
    need = offset + math.prod(shape) * dtype.itemsize
    if not path.name.lower().endswith(".gz"):
        size = path.stat().st_size
        if size < need:
            raise ReaderError(
                f"{path}: truncated: the header declares {'x'.join(map(str, shape))} voxels of "
                f"{dtype} from byte {offset} ({need} bytes in all) but the file has {size} bytes"
            )
        return img
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # EOFError, zlib.error, BadGzipFile, ValueError: buffer too small
        raise ReaderError(
            f"{path}: truncated or corrupt: the header declares {'x'.join(map(str, shape))} "
            f"voxels of {dtype} and the compressed data does not hold them ({_reason(exc)})"
        ) from None
    return type(img)(data, img.affine, img.header)


# --------------------------------------------------------------------------------------------
# TR
# --------------------------------------------------------------------------------------------


def repetition_time(path: Path, img: Any, t_r: float | None = None) -> tuple[float, str]:
    """The TR in seconds and where it came from: ``t_r`` if given, else the BIDS sidecar's
    ``RepetitionTime`` (BIDS makes the sidecar authoritative), else the header's ``pixdim[4]``
    in its ``xyzt_units``."""
    if t_r is not None:
        if not (math.isfinite(t_r) and t_r > 0):
            raise InvalidDataError(f"{path}: t_r must be a number of seconds > 0, got {t_r}")
        return float(t_r), "argument"
    header_tr = None
    zooms = img.header.get_zooms()
    if len(zooms) > 3 and zooms[3] > 0:
        unit = img.header.get_xyzt_units()[1]
        header_tr = float(zooms[3]) * _TIME_UNITS.get(unit, 1.0)
    json_path = sidecar(path, ".json")
    if json_path.is_file():
        meta = read_json(json_path)
        if "RepetitionTime" in meta:
            value = meta["RepetitionTime"]
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ReaderError(
                    f"{json_path}: RepetitionTime must be a number of seconds > 0, got {value!r}"
                )
            if header_tr is not None and abs(header_tr - value) > 0.01 * value:
                log.warning(
                    "%s: RepetitionTime %s s differs from the NIfTI header's %s s; using the "
                    "sidecar's (BIDS)",
                    json_path,
                    value,
                    header_tr,
                )
            return float(value), f"{json_path.name}:RepetitionTime"
    if header_tr is None:
        raise ReaderError(
            f"{path}: RepetitionTime: no BIDS sidecar with RepetitionTime and the header's "
            f"pixdim[4] is 0; write the TR into {json_path.name} as "
            '{"RepetitionTime": <seconds>}, or pass read_fmri(t_r=...)'
        )
    return header_tr, "header pixdim[4]"


# --------------------------------------------------------------------------------------------
# atlas
# --------------------------------------------------------------------------------------------


def _atlas_lut(atlas_path: Path | None, values: np.ndarray, labels: Any) -> dict[int, str]:
    """Names of the label values: ``labels`` if given, else a ``dseg.tsv``-style table beside the
    atlas (``index``, ``name``), else ``parcel-<value>``."""
    import pandas as pd

    names = {int(v): f"parcel-{int(v):03d}" for v in values}
    if labels is not None:
        if isinstance(labels, Mapping):
            names.update({int(k): str(v) for k, v in labels.items()})
        else:
            labels = [str(x) for x in labels]
            if labels and labels[0].lower() == "background" and len(labels) == len(values) + 1:
                labels = labels[1:]  # nilearn's fetchers list the background first
            if len(labels) != len(values):
                raise InvalidDataError(
                    f"{atlas_path or 'atlas'}: labels: {len(labels)} names for {len(values)} "
                    "parcels"
                )
            names.update(dict(zip((int(v) for v in values), labels, strict=True)))
        return names
    if atlas_path is None:
        return names
    stem = atlas_path.name.removesuffix(".gz").removesuffix(".nii")
    for table_path in (atlas_path.with_name(stem + ".tsv"), atlas_path.with_name(stem + ".csv")):
        if table_path.is_file():
            try:
                table = pd.read_csv(table_path, sep=None, engine="python")
            except Exception as exc:
                raise ReaderError(f"{table_path}: unreadable look-up table ({exc})") from None
            if not {"index", "name"} <= set(table.columns):
                raise ReaderError(
                    f"{table_path}: look-up table needs columns 'index' and 'name' "
                    f"(has {', '.join(map(str, table.columns))})"
                )
            named = 0
            for index, name in zip(table["index"], table["name"], strict=True):
                if int(index) in names:
                    names[int(index)] = str(name)
                    named += 1
            if named < len(names):
                unnamed = [v for v in names if names[v] == f"parcel-{v:03d}"]
                log.warning(
                    "%s: names %d of the atlas's %d parcels; the others keep numbered names (%s)",
                    table_path,
                    named,
                    len(names),
                    ", ".join(names[v] for v in unnamed[:5])
                    + (", ..." if len(unnamed) > 5 else ""),
                )
            break
    return names


def _check_space(img: Any, atlas_img: Any, path: Path, atlas_name: str) -> bool:
    """Whether the atlas must be resampled to the image's grid; an error when it cannot be.

    Same grid: nothing to do. Different grid but overlapping fields of view: nilearn resamples
    the atlas onto the data (nearest neighbour for labels); we warn, since a coarse atlas on a
    fine grid (or the reverse) changes parcel borders. No overlap at all: the atlas is in
    another space (a different template, or voxel instead of world coordinates): an error.
    """
    import nibabel as nib

    shape, ashape = img.shape[:3], atlas_img.shape[:3]
    if shape == ashape and np.allclose(img.affine, atlas_img.affine, atol=1e-3):
        return False
    data = np.asarray(atlas_img.dataobj)
    nonzero = np.argwhere(data.reshape(*ashape, -1).any(axis=-1) if data.ndim == 4 else data != 0)
    if not len(nonzero):
        raise ReaderError(f"{atlas_name}: the atlas holds no parcel (every voxel is 0)")
    world = nib.affines.apply_affine(atlas_img.affine, nonzero)
    to_img = np.linalg.inv(img.affine)
    ijk = nib.affines.apply_affine(to_img, world)
    inside = ((ijk > -0.5) & (ijk < np.asarray(shape) - 0.5)).all(axis=1)
    if not inside.any():
        raise ReaderError(
            f"{atlas_name}: atlas space: no parcel voxel lies in the field of view of {path} "
            f"(atlas shape {ashape}, image shape {shape}; affines differ): a different space?"
        )
    log.warning(
        "%s: atlas grid (shape %s) differs from %s (shape %s%s); resampling the atlas to the "
        "image (%.0f%% of its voxels fall inside the image's field of view)",
        atlas_name,
        ashape,
        path,
        shape,
        "" if tuple(ashape) != tuple(shape) else ", same shape, another affine",
        100 * inside.mean(),
    )
    return True


def _centroids(atlas_img: Any, values: np.ndarray, maps: bool) -> np.ndarray:
    """Centre of mass (mm, atlas world space) of each parcel or probability map.

    Written here, with scipy, because nilearn's ``find_parcellation_cut_coords`` is a plotting
    helper (it imports matplotlib and returns a display point in the largest component, not
    the centroid).
    """
    import nibabel as nib
    from scipy import ndimage

    data = np.asarray(atlas_img.dataobj)
    if maps:
        ijk = [ndimage.center_of_mass(np.abs(data[..., k])) for k in range(data.shape[-1])]
    else:
        ijk = ndimage.center_of_mass(np.ones_like(data, dtype=np.float32), data, values)
    return nib.affines.apply_affine(atlas_img.affine, np.asarray(ijk, dtype=np.float64))


# --------------------------------------------------------------------------------------------
# read_fmri
# --------------------------------------------------------------------------------------------


@reader_boundary("BOLD NIfTI")
def read_fmri(
    path: str | os.PathLike[str],
    atlas: str | os.PathLike[str] | Any | None,
    *,
    labels: Sequence[str] | Mapping[int, str] | None = None,
    confounds: str | os.PathLike[str] | Any = None,
    confound_strategy: Sequence[str] = ("motion", "high_pass", "wm_csf"),
    confound_options: Mapping[str, Any] | None = None,
    standardize: bool | str | None = False,
    detrend: bool = False,
    high_pass: float | None = None,
    low_pass: float | None = None,
    t_r: float | None = None,
    recording_id: str | None = None,
    sha256: str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Recording:
    """Read a 4-D BOLD NIfTI into a Recording of parcel time series.

    Parameters
    ----------
    path : str or Path
        A 4-D ``.nii``/``.nii.gz`` (e.g. BIDS ``func/..._bold.nii.gz`` or an fMRIPrep
        ``..._desc-preproc_bold.nii.gz``).
    atlas : str, Path or nibabel image
        A labels image (3-D, integer labels, 0 = background) or probabilistic maps (4-D, one map
        per region) in the same space as the data. A different grid is resampled (with a
        warning); an atlas outside the image's field of view is an error. Required: None
        raises a :class:`ReaderError` naming the file.
    labels : sequence or mapping, optional
        Parcel names, in label-value (or map) order, or ``{value: name}``. Default: the atlas'
        ``dseg.tsv``/``.csv`` look-up table beside it (columns ``index``, ``name``), else
        ``parcel-<value>``.
    confounds : "fmriprep", path, DataFrame or array, optional
        Confounds regressed out by the masker: ``"fmriprep"`` loads the fMRIPrep confounds of
        ``path`` with ``nilearn.interfaces.fmriprep.load_confounds(strategy=confound_strategy)``;
        a path reads a TSV (one row per volume); a table or array is used as is.
    confound_strategy : sequence of str
        ``load_confounds`` strategy (default motion, high-pass cosines, white matter and CSF).
    confound_options : mapping, optional
        Other ``load_confounds`` arguments, e.g. ``{"motion": "basic"}`` (6 parameters
        instead of the 24 of ``"full"``: fewer regressors for short runs).
    standardize : bool or str
        As nilearn names it: False/None keeps raw parcel means; ``"zscore_sample"`` (True),
        ``"zscore"`` or ``"psc"`` (percent signal change).
    detrend, high_pass, low_pass
        Passed to the masker (``nilearn.signal.clean``); filters in Hz.
    t_r : float, optional
        Repetition time in seconds; default the sidecar's ``RepetitionTime``, else the header.
    recording_id : str, optional
        Default the BIDS entities (``sub-01_task-rest_run-1``), else the file stem.
    sha256, provenance
        As in :func:`neurofm.readers.eeg.read_eeg`.

    Returns
    -------
    Recording
        ``bold`` (volumes x parcels, rate 1/TR, ``channel_info`` with ``label``, ``x``, ``y``,
        ``z``, ``n_voxels``) and, for a BIDS file with an events table, ``events``.

    Raises
    ------
    ReaderError
        Not a NIfTI file, not 4-D, no TR, an atlas in another space or with no parcel left.
    InvalidDataError
        Confounds whose row count differs from the number of volumes, bad option values.
    """
    import nibabel as nib

    path = Path(path)
    if atlas is None:  # checked first: without an atlas nothing else about the file matters
        raise ReaderError(
            f"{path}: atlas: a NIfTI file is reduced to parcels, pass an atlas (--atlas)"
        )
    img = _load_image(path, "BOLD image")
    if len(img.shape) != 4:
        raise ReaderError(
            f"{path}: dimensions: expected a 4-D image (x, y, z, time), got {len(img.shape)}-D "
            f"shape {tuple(img.shape)}"
        )
    n_vols = int(img.shape[3])
    if n_vols < 2:
        raise ReaderError(f"{path}: dimensions: a time series needs >= 2 volumes, got {n_vols}")
    tr, tr_source = repetition_time(path, img, t_r)
    if isinstance(atlas, str | os.PathLike):
        atlas_path: Path | None = Path(atlas)
        atlas_img = _load_image(atlas_path, "atlas")
        atlas_name = str(atlas_path)
    else:
        atlas_path, atlas_img, atlas_name = None, atlas, "atlas"
        if not isinstance(atlas_img, nib.spatialimages.SpatialImage):
            raise InvalidDataError(f"atlas: expected a NIfTI path or image, got {type(atlas)}")
    if len(atlas_img.shape) not in (3, 4):
        raise ReaderError(
            f"{atlas_name}: atlas dimensions: expected 3-D labels or 4-D maps, got shape "
            f"{tuple(atlas_img.shape)}"
        )
    maps = len(atlas_img.shape) == 4
    if not maps:
        raw_labels = np.asarray(atlas_img.dataobj)
        if not np.isfinite(raw_labels).all() or not np.allclose(raw_labels, np.round(raw_labels)):
            raise ReaderError(
                f"{atlas_name}: atlas values: a 3-D labels image must hold integer labels "
                "(probabilistic atlases are 4-D, one map per region)"
            )
        if raw_labels.min() < 0 or raw_labels.max() > np.iinfo(np.int32).max:
            raise ReaderError(
                f"{atlas_name}: atlas values: labels must be integers from 0 (background) to "
                f"2^31-1, got {raw_labels.min():g} to {raw_labels.max():g}"
            )
        atlas_img = nib.Nifti1Image(
            np.round(raw_labels).astype(np.int32), atlas_img.affine, atlas_img.header
        )
        values = np.unique(atlas_img.get_fdata().astype(np.int64))
        values = values[values != 0]
        if not len(values):
            raise ReaderError(f"{atlas_name}: the atlas holds no parcel (every voxel is 0)")
    else:
        values = np.arange(1, atlas_img.shape[3] + 1)
    names = _atlas_lut(atlas_path, values, labels)
    resampled = _check_space(img, atlas_img, path, atlas_name)
    std = _standardize(standardize, path)
    conf, sample_mask, conf_desc = _confounds(
        confounds, confound_strategy, dict(confound_options or {}), path, n_vols
    )
    start = 0.0
    if sample_mask is not None:
        start = _leading_drop(sample_mask, n_vols, path) * tr
    import pandas as pd
    from nilearn.maskers import NiftiLabelsMasker, NiftiMapsMasker

    common = dict(
        standardize=std,
        detrend=detrend,
        high_pass=high_pass,
        low_pass=low_pass,
        t_r=tr,
        resampling_target="data",
    )
    if maps:
        masker = NiftiMapsMasker(maps_img=atlas_img, **common)
    else:
        lut = pd.DataFrame(
            {"index": [0, *values.tolist()], "name": ["Background", *(names[v] for v in values)]}
        )
        masker = NiftiLabelsMasker(labels_img=atlas_img, lut=lut, strategy="mean", **common)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            series = masker.fit_transform(img, confounds=conf, sample_mask=sample_mask)
        except NeuroFMError:
            raise
        except Exception as exc:  # nilearn raises ValueError/DimensionError on mismatches
            raise ReaderError(
                f"{path}: parcel extraction with {atlas_name} failed ({_reason(exc)})"
            ) from None
    for w in caught:
        log.info("%s: nilearn: %s", path, w.message)
    kept = _kept_values(masker, values, series.shape[1], maps)
    lost = sorted(set(values.tolist()) - set(kept.tolist()))
    if lost:
        log.warning(
            "%s: %d parcel(s) of %s have no voxel in the image after resampling and are left "
            "out: %s",
            path,
            len(lost),
            atlas_name,
            ", ".join(names[v] for v in lost[:10]),
        )
    flat = np.flatnonzero(np.ptp(series, axis=0) == 0) if len(series) > 1 else []
    if len(flat):
        # e.g. an atlas shifted off the brain: its parcels sit on the zeros around it
        log.warning(
            "%s: %d of %d parcel(s) of %s are constant over the run (%s): voxels outside the "
            "brain, or an atlas in another space?",
            path,
            len(flat),
            series.shape[1],
            atlas_name,
            ", ".join(names[int(kept[i])] for i in flat[:10]) + (", ..." if len(flat) > 10 else ""),
        )
    centroids = _centroids(atlas_img, kept, maps)
    n_voxels = _voxel_counts(masker, kept, maps)
    channels = [names[int(v)] for v in kept]
    unit = {"psc": "%", "zscore": "z", "zscore_sample": "z"}.get(std or "", "a.u.")
    bold = RegularSeries(
        np.ascontiguousarray(series, dtype=np.float32),
        1.0 / tr,
        start,
        channels,
        "bold",
        unit,
        channel_info={
            "label": kept.astype(np.int64),
            "x": centroids[:, 0],
            "y": centroids[:, 1],
            "z": centroids[:, 2],
            "n_voxels": n_voxels,
        },
    )
    signals: dict[str, Signal] = {"bold": bold}
    events = _bids_events(path)
    if events is not None:
        signals["events"] = events
    bids_root = bids_root_of(path)
    entities = entities_of(path) if bids_root is not None else {}
    rec_id = recording_id or _default_id(path, entities)
    meta = Metadata(
        subject_id=entities.get("subject", ""),
        session_id=entities.get("session", ""),
        task=entities.get("task", ""),
        modality="fmri",
        extra={
            "repetition_time_s": tr,
            "n_volumes": n_vols,
            "n_parcels": len(channels),
            "voxel_size_mm": [float(z) for z in img.header.get_zooms()[:3]],
        },
    )
    prov = provenance_from(
        {
            "source_path": str(path.resolve()),
            "sha256": sha256 or files_sha256([path]),
            "reader": "neurofm.readers.fmri",
            "neurofm_version": neurofm.__version__,
            "nilearn_version": _version("nilearn"),
            "repetition_time_source": tr_source,
            "atlas": atlas_name,
            "atlas_sha256": files_sha256([atlas_path]) if atlas_path is not None else "",
            "atlas_kind": "maps" if maps else "labels",
            "atlas_resampled": resampled,
            "masker": type(masker).__name__,
            "standardize": std,
            "detrend": detrend,
            "high_pass": high_pass,
            "low_pass": low_pass,
            "confounds": conf_desc,
            **({"bids_root": str(bids_root), "bids_entities": entities} if bids_root else {}),
            **(dict(provenance) if provenance else {}),
        }
    )
    return Recording(
        rec_id, signals, duration=start + len(bold) * tr, metadata=meta, provenance=prov
    )


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover
        return ""


def _standardize(value: bool | str | None, path: Path) -> str | None:
    # nilearn 0.14 deprecates booleans here; map them to the names it wants.
    if value is None or value is False:
        return None
    if value is True:
        return "zscore_sample"
    if value in _STANDARDIZE:
        return str(value)
    raise InvalidDataError(
        f"{path}: standardize: expected False, True or one of {list(_STANDARDIZE)}, got {value!r}"
    )


def _confounds(
    confounds: Any, strategy: Sequence[str], options: dict[str, Any], path: Path, n_vols: int
) -> tuple[Any, np.ndarray | None, str]:
    import pandas as pd

    if confounds is None:
        return None, None, ""
    if isinstance(confounds, str) and confounds == "fmriprep":
        from nilearn.interfaces.fmriprep import load_confounds

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                table, mask = load_confounds(str(path), strategy=tuple(strategy), **options)
        except Exception as exc:  # ValueError when the fMRIPrep files are not found
            if "_desc-" not in path.name:  # nilearn: "Invalid file type for the ... method"
                raise ReaderError(
                    f"{path}: confounds 'fmriprep' are the ones fMRIPrep writes beside its "
                    "preprocessed BOLD (*_desc-preproc_bold.nii.gz with "
                    "*_desc-confounds_timeseries.tsv), and this file is not an fMRIPrep output; "
                    "give a confounds table instead (--confounds FILE.tsv), or none"
                ) from None
            raise ReaderError(
                f"{path}: confounds: fMRIPrep confounds not loaded ({_reason(exc)})"
            ) from None
        opts = "".join(f" {k}={v}" for k, v in options.items())
        desc = f"fmriprep load_confounds strategy={list(strategy)}{opts} ({table.shape[1]} columns)"
        frame = table
    else:
        mask = None
        if isinstance(confounds, str | os.PathLike):
            conf_path = Path(confounds)
            if not conf_path.is_file():
                raise ReaderError(f"{conf_path}: confounds: no such file")
            try:
                frame = pd.read_csv(conf_path, sep="\t", na_values="n/a")
            except Exception as exc:
                raise ReaderError(f"{conf_path}: confounds: unreadable TSV ({exc})") from None
            desc = str(conf_path)
        else:
            frame = pd.DataFrame(
                np.asarray(confounds) if not hasattr(confounds, "columns") else confounds
            )
            desc = f"table ({frame.shape[1]} columns)"
        # fMRIPrep leaves n/a in the first row of derivatives; 0 is what nilearn does too.
        frame = frame.fillna(0.0)
    if len(frame) != n_vols:
        raise InvalidDataError(
            f"{path}: confounds: {len(frame)} rows but the image has {n_vols} volumes"
        )
    return frame, mask, desc


def _leading_drop(mask: np.ndarray, n_vols: int, path: Path) -> int:
    """Non-steady-state volumes dropped at the start are a later start; a mask with holes
    (scrubbing) would make the series irregular, which a RegularSeries cannot hold."""
    mask = np.asarray(mask, dtype=np.int64)
    if len(mask) == 0 or not np.array_equal(mask, np.arange(mask[0], n_vols)):
        raise InvalidDataError(
            f"{path}: confounds: the sample mask removes volumes inside the run (scrubbing); "
            "a regular series cannot hold gaps: leave 'scrub' out of confound_strategy"
        )
    return int(mask[0])


def _kept_values(masker: Any, values: np.ndarray, n_cols: int, maps: bool) -> np.ndarray:
    if maps:
        return values[:n_cols]
    ids = getattr(masker, "region_ids_", None)
    if isinstance(ids, dict):
        kept = [int(v) for k, v in ids.items() if k != "background"]
        if len(kept) == n_cols:
            return np.asarray(kept, dtype=np.int64)
    if n_cols == len(values):
        return values
    raise ReaderError(f"parcel extraction returned {n_cols} parcels for {len(values)} labels")


def _voxel_counts(masker: Any, kept: np.ndarray, maps: bool) -> np.ndarray:
    if maps:
        return np.full(len(kept), -1, dtype=np.int64)
    img = getattr(masker, "labels_img_", None)  # the labels on the data's grid, after fit
    if img is None:
        return np.full(len(kept), -1, dtype=np.int64)
    data = np.asarray(img.dataobj).astype(np.int64).ravel()
    # Counted per label value present (not a bincount up to the largest label: a label of
    # 10^9 would allocate 8 GB).
    values, counts = np.unique(data[data > 0], return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist(), strict=True))
    return np.asarray([found.get(int(k), 0) for k in kept], dtype=np.int64)


def _bids_events(path: Path) -> Intervals | None:
    """A BIDS ``_events.tsv`` beside the data as Intervals: ``trial_type`` labels, other
    columns kept."""
    import pandas as pd

    events_path = sidecar(path, "_events.tsv")
    if not events_path.is_file():
        return None
    try:
        table = pd.read_csv(events_path, sep="\t", na_values="n/a", keep_default_na=False)
    except Exception as exc:
        raise ReaderError(f"{events_path}: unreadable events table ({exc})") from None
    for key in ("onset", "duration"):
        if key not in table:
            raise ReaderError(f"{events_path}: events: required column {key!r} is missing")
    table = table.sort_values("onset", kind="stable")
    onset = table["onset"].to_numpy(np.float64)
    duration = np.nan_to_num(table["duration"].to_numpy(np.float64))
    labels = table["trial_type"].astype(str).to_numpy(object) if "trial_type" in table else None
    columns = {
        c: table[c].to_numpy()
        for c in table.columns
        if c not in ("onset", "duration", "trial_type") and table[c].dtype.kind in "biuf"
    }
    try:
        return Intervals(onset, onset + duration, labels, columns, name="events")
    except InvalidDataError as exc:
        raise InvalidDataError(f"{events_path}: {exc}") from None


def _default_id(path: Path, entities: Mapping[str, str]) -> str:
    ident = entity_string(dict(entities)) if entities else ""
    if ident:
        return ident
    name = path.name
    for ext in NIFTI_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem


# --------------------------------------------------------------------------------------------
# simultaneous EEG-fMRI
# --------------------------------------------------------------------------------------------


@reader_boundary("EEG-fMRI")
def read_eeg_fmri(
    eeg: str | os.PathLike[str],
    bold: str | os.PathLike[str],
    atlas: str | os.PathLike[str] | Any,
    *,
    eeg_options: Mapping[str, Any] | None = None,
    fmri_options: Mapping[str, Any] | None = None,
    recording_id: str | None = None,
    sha256: str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Recording:
    """One Recording of a simultaneous EEG-fMRI run, on the EEG's clock.

    The BOLD series is placed at the scanner's volume markers found in the EEG (``volumes``,
    see :func:`neurofm.readers.eeg.read_eeg`'s ``volume_marker``): volume ``i`` is sampled at
    marker ``i``. There must be exactly one marker per volume. Without markers, the two are
    aligned on their acquisition start times (BIDS ``_scans.tsv`` ``acq_time``), or, when
    those are missing too, assumed to start together (with a warning).

    Parameters
    ----------
    eeg, bold : str or Path
        The EEG file and the 4-D BOLD NIfTI of the same run.
    atlas
        As in :func:`read_fmri`.
    eeg_options, fmri_options : mapping, optional
        Keyword arguments of :func:`~neurofm.readers.eeg.read_eeg` and :func:`read_fmri`.
    recording_id : str, optional
        Default the EEG file's (BIDS entities without the modality).

    Returns
    -------
    Recording
        ``eeg``, ``events``, ``volumes`` (EEG side), ``bold`` and ``bold_events`` (fMRI side),
        all on one time axis starting at the earlier of the two; ``provenance.extra
        ["alignment"]`` says how they were aligned.

    Raises
    ------
    InvalidDataError
        The number of volume markers differs from the number of volumes, or their spacing
        from the TR (by more than 1%).
    """
    from neurofm.readers.eeg import read_eeg

    eeg, bold = Path(eeg), Path(bold)
    eeg_rec = read_eeg(eeg, **dict(eeg_options or {}))
    fmri_rec = read_fmri(bold, atlas, **dict(fmri_options or {}))
    series = fmri_rec["bold"]
    tr = 1.0 / series.rate
    n_vols = int(fmri_rec.metadata.extra["n_volumes"])
    first_kept = int(round(series.start / tr))
    if "volumes" in eeg_rec:
        markers = eeg_rec["volumes"].start
        if len(markers) != n_vols:
            raise InvalidDataError(
                f"{eeg}: volumes: {len(markers)} scanner volume markers in the EEG but {bold} "
                f"has {n_vols} volumes; they must match one to one"
            )
        steps = np.diff(markers)
        # The markers time the same volumes the TR spaces: beyond 1% (amplifier clocks drift
        # by parts per million) one of the two is wrong, and the BOLD would be placed on a
        # time axis its markers contradict.
        if len(steps) and abs(float(np.median(steps)) - tr) > 0.01 * tr:
            raise InvalidDataError(
                f"{eeg}: volumes: scanner volume markers are {float(np.median(steps)):.4g} s "
                f"apart but the TR of {bold} is {tr:.4g} s; they must agree (within 1%)"
            )
        offset = float(markers[0])
        how = {"method": "volume_markers", "n_markers": int(len(markers))}
    else:
        t_eeg, t_bold = acquisition_time(eeg), acquisition_time(bold)
        if t_eeg is not None and t_bold is not None:
            offset = (t_bold - t_eeg).total_seconds()
            how = {
                "method": "acq_time",
                "eeg_acq_time": t_eeg.isoformat(),
                "bold_acq_time": t_bold.isoformat(),
            }
        else:
            offset = 0.0
            how = {"method": "assumed_simultaneous_start"}
            log.warning(
                "%s: no scanner volume markers and no acq_time for both files; assuming EEG "
                "and %s started together",
                eeg,
                bold,
            )
    # Everything on one axis from the earlier start (times must be >= 0).
    shift_eeg = max(0.0, -offset)
    shift_bold = max(0.0, offset)
    signals: dict[str, Signal] = {}
    for name, sig in eeg_rec.signals.items():
        signals[name] = _shifted(sig, shift_eeg)
    signals["bold"] = _shifted(series, shift_bold)
    if "events" in fmri_rec:
        signals["bold_events"] = _shifted(fmri_rec["events"], shift_bold, name="bold_events")
    how.update(offset_s=offset, first_volume_kept=first_kept)
    duration = max(eeg_rec.duration + shift_eeg, shift_bold + fmri_rec.duration)
    meta = eeg_rec.metadata
    meta.modality = "eeg+fmri"
    meta.extra.update({f"fmri_{k}": v for k, v in fmri_rec.metadata.extra.items()})
    extra = dict(eeg_rec.provenance.extra)
    extra["fmri"] = {
        "source_path": fmri_rec.provenance.source_path,
        "sha256": fmri_rec.provenance.sha256,
        **fmri_rec.provenance.extra,
    }
    extra["alignment"] = how
    extra.update(provenance or {})
    prov = provenance_from(
        {
            "source_path": eeg_rec.provenance.source_path,
            "sha256": sha256 or eeg_rec.provenance.sha256,
            "reader": "neurofm.readers.fmri.read_eeg_fmri",
            "neurofm_version": neurofm.__version__,
            **extra,
        }
    )
    return Recording(recording_id or eeg_rec.id, signals, duration, meta, prov)


def _shifted(sig: Signal, shift: float, name: str | None = None) -> Signal:
    if shift == 0.0 and name is None:
        return sig
    if isinstance(sig, RegularSeries):
        return RegularSeries(
            sig.data,
            sig.rate,
            sig.start + shift,
            sig.channels,
            name or sig.name,
            sig.unit,
            channel_info=sig.channel_info,
        )
    if isinstance(sig, Intervals):
        cols = {k: (v + shift if k in sig.time_columns else v) for k, v in sig.columns.items()}
        return Intervals(
            sig.start + shift,
            sig.end + shift,
            sig.labels,
            cols,
            sig.time_columns,
            name or sig.name,
        )
    raise TypeError(f"cannot shift {type(sig).__name__}")  # pragma: no cover


def read_bids_run(
    run: BIDSRun,
    atlas: str | os.PathLike[str] | Any | None = None,
    *,
    eeg_options: Mapping[str, Any] | None = None,
    fmri_options: Mapping[str, Any] | None = None,
    sha256: str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Recording:
    """Read one run of a BIDS dataset: EEG and BOLD together when both exist, else the one.

    Raises
    ------
    ReaderError
        A run with BOLD but no atlas.
    """
    from neurofm.readers.eeg import read_eeg

    prov = {"bids_root": str(run.root), **dict(provenance or {})}
    sha = sha256 or files_sha256(run.files())
    if run.bold is not None and atlas is None:
        raise ReaderError(
            f"{run.bold}: atlas: parcel time series need an atlas (none given, none found in "
            f"{run.root / 'derivatives'}); pass --atlas"
        )
    if run.eeg is not None and run.bold is not None:
        return read_eeg_fmri(
            run.eeg,
            run.bold,
            atlas,
            eeg_options=eeg_options,
            fmri_options=fmri_options,
            recording_id=run.recording_id,
            sha256=sha,
            provenance=prov,
        )
    if run.eeg is not None:
        return read_eeg(
            run.eeg,
            recording_id=run.recording_id,
            sha256=sha,
            provenance=prov,
            **dict(eeg_options or {}),
        )
    assert run.bold is not None
    return read_fmri(
        run.bold,
        atlas,
        recording_id=run.recording_id,
        sha256=sha,
        provenance=prov,
        **dict(fmri_options or {}),
    )
