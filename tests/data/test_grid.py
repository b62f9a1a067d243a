"""The one uint8 <-> model-float conversion (data/images.py), against formulas written here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gencomp_jax.data import images

K = np.arange(256)


def test_levels_match_the_published_grids():
    # edge: k / 127.5 - 1 (levels at +-1); center: VDM / UQDM reference, 2 (k + 1/2) / 256 - 1
    np.testing.assert_allclose(images.to_model(K.astype(np.uint8), grid="edge"), K / 127.5 - 1, atol=1e-7)
    np.testing.assert_allclose(images.to_model(K.astype(np.uint8), grid="center"), 2 * (K + 0.5) / 256 - 1,
                               atol=1e-7)
    np.testing.assert_array_equal(images.grid_values(grid="center"), images.to_model(K, grid="center"))


@pytest.mark.parametrize("grid", images.GRIDS)
def test_round_trip_and_nearest_level(grid):
    x = images.to_model(K.astype(np.uint8), grid=grid)
    np.testing.assert_array_equal(images.to_uint8(x, grid=grid), K)
    half = 0.49 * (2.0 / 255 if grid == "edge" else 2.0 / 256)  # within half a level of k -> k
    np.testing.assert_array_equal(images.to_uint8(x + half, grid=grid), K)
    np.testing.assert_array_equal(images.to_uint8(x - half, grid=grid), K)
    assert images.to_uint8(jnp.array([-5.0, 5.0]), grid=grid).tolist() == [0, 255]


def test_edge_rounding_equals_the_formula_old_files_were_written_with():
    # Files of 44b2816 centre coding tables at round((x + 1) * 127.5): the conversion must agree on
    # every float, not only on grid points (a division by 1/127.5 differs on ~6 in 10^6 values).
    u = jax.random.uniform(jax.random.PRNGKey(0), (1_000_000,), minval=-1.01, maxval=1.01)
    want = np.clip(np.round((np.asarray(u) + np.float32(1.0)) * np.float32(127.5)), 0, 255)
    np.testing.assert_array_equal(np.asarray(images.grid_index(u, grid="edge")), want)


def test_unknown_grid_is_a_clear_error():
    with pytest.raises(ValueError, match="center"):
        images.to_model(np.zeros(3, np.uint8), grid="middle")
    with pytest.raises(ValueError, match="edge"):
        images.grid_index(np.zeros(3), grid="middle")
