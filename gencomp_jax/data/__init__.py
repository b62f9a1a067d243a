"""Data: image I/O, sources (folders, scikit-image photos, TFDS, bundled Kodak) and grain batch pipelines.

Images are uint8 [H, W, 3] at every boundary. Kodak (data/kodak, sha256-verified) is for
evaluation only; the training iterator refuses it.
"""

from gencomp_jax.data.images import (
    DEFAULT_GRID, GRIDS, MIN_SIDE, ImageError, check_image, grid_index, grid_values, pad_to_multiple,
    padded_size, read_image, to_model, to_uint8, unpad, write_png)
from gencomp_jax.data.pipeline import (
    INPUT_BOUND_FRACTION, CenterCrop, EvalBatches, RandomCrop, TrainIterator, center_crop, default_workers, fit_small,
    input_bound_message, load_eval_set, make_eval_iterator, make_train_iterator)
from gencomp_jax.data.sources import (
    SKIMAGE_COLOR_PHOTOS, SKIMAGE_GRAY_PHOTOS, ArraySource, DataError, FolderSource, ImageSource,
    KodakIntegrityError, TfdsSource, image_extensions, kodak_dir, list_image_files, load_kodak, open_source, read_manifest,
    skimage_source, tfds_source, verify_manifest)

__all__ = [
    "DEFAULT_GRID", "GRIDS", "grid_index", "grid_values", "to_model", "to_uint8",
    "MIN_SIDE", "ImageError", "check_image", "pad_to_multiple", "padded_size", "read_image", "unpad", "write_png",
    "INPUT_BOUND_FRACTION", "CenterCrop", "EvalBatches", "RandomCrop", "TrainIterator", "center_crop",
    "default_workers", "fit_small", "input_bound_message", "load_eval_set", "make_eval_iterator", "make_train_iterator",
    "SKIMAGE_COLOR_PHOTOS", "SKIMAGE_GRAY_PHOTOS", "ArraySource", "DataError", "FolderSource", "ImageSource",
    "KodakIntegrityError", "TfdsSource", "image_extensions", "kodak_dir", "list_image_files", "load_kodak", "open_source",
    "read_manifest", "skimage_source", "tfds_source", "verify_manifest",
]
