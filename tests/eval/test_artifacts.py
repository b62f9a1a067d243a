"""eval/artifacts.py: the sample grid's layout, its PNG round trip, the statistics."""

import numpy as np
import pytest

from gencomp_jax.data import read_image
from gencomp_jax.eval.artifacts import sample_grid, sample_stats, write_sample_grid


def test_grid_layout_is_row_major_on_white_with_padding(tmp_path):
    imgs = np.stack([np.full((3, 5, 3), 10 * (i + 1), np.uint8) for i in range(3)])
    imgs[1, 0, 0] = (1, 2, 3)
    g = sample_grid(imgs, pad=2)
    assert g.shape == (2 * (3 + 2) + 2, 2 * (5 + 2) + 2, 3)     # 3 images -> 2 x 2 cells
    np.testing.assert_array_equal(g[2:5, 2:7], imgs[0])
    np.testing.assert_array_equal(g[2:5, 9:14], imgs[1])        # second image: first row, second column
    np.testing.assert_array_equal(g[7:10, 2:7], imgs[2])
    assert (g[7:10, 9:14] == 255).all() and (g[:2] == 255).all() and (g[:, 7:9] == 255).all()
    path = write_sample_grid(tmp_path / "a" / "samples.png", imgs, pad=2)
    np.testing.assert_array_equal(read_image(path, min_side=1), g)


def test_stats_and_bad_input():
    imgs = np.array([0, 255], np.uint8).reshape(2, 1, 1, 1).repeat(3, axis=-1)
    assert sample_stats(imgs) == {"sample_mean": 127.5, "sample_std": 127.5}
    with pytest.raises(ValueError, match="uint8"):
        sample_grid(imgs.astype(np.float32))
