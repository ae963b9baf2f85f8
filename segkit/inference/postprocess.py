"""Optional clean-up of predicted masks with scikit-image (off unless asked for)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import measure, morphology


def postprocess_mask(
    mask: np.ndarray, fill_holes: bool = False, keep_largest: bool = False, min_size: int = 0
) -> np.ndarray:
    """A boolean (H, W) mask cleaned up: specks below ``min_size`` pixels dropped, holes filled, and
    only the largest connected component kept, in that order."""
    cleaned = mask.astype(bool)
    if min_size > 0 and cleaned.any():
        cleaned = morphology.remove_small_objects(cleaned, max_size=min_size - 1)
    if fill_holes:
        cleaned = ndimage.binary_fill_holes(cleaned)
    if keep_largest and cleaned.any():
        labels = measure.label(cleaned, connectivity=2)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        cleaned = labels == int(sizes.argmax())
    return cleaned
