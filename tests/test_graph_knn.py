"""knn.knn: exact k nearest neighbours against a brute-force full NumPy sort."""
import numpy as np
import pytest

from dgg_tf.numerics.knn import _full_rows, knn

pytestmark = pytest.mark.backends    # also run with KERAS_BACKEND=jax in CI


def brute_knn(x, k):
    """Full float64 distance matrix, stable sort by (distance, index), the row itself first."""
    x = np.asarray(x, np.float64)
    n = len(x)
    diff = x[:, None, :] - x[None, :, :]
    d = np.einsum("ijk,ijk->ij", diff, diff)
    out = np.empty((n, k + 1), np.int64)
    for i in range(n):
        order = np.argsort(d[i], kind="stable")
        out[i] = [i] + [j for j in order if j != i][:k]
    return out


@pytest.mark.parametrize("n,dim,k,block", [(60, 5, 3, 7), (200, 12, 10, 64), (150, 3, 40, 1000),
                                           (300, 30, 2, 300)])
def test_knn_matches_brute_force(n, dim, k, block):
    rng = np.random.default_rng(n + dim)
    x = rng.random((n, dim)).astype(np.float32)
    np.testing.assert_array_equal(knn(x, k, block_size=block), brute_knn(x, k))


def test_knn_duplicates_and_ties():
    rng = np.random.default_rng(1)
    x = np.round(rng.random((180, 6)) * 2) / 2            # few distinct values: many exact ties
    x[rng.integers(0, 180, 60)] = x[rng.integers(0, 180, 60)]  # duplicated rows
    x[[5, 17, 99, 150]] = x[3]                            # a row with 4 duplicates (distance 0)
    for k in (1, 4, 25):
        got = knn(x, k, block_size=32)
        np.testing.assert_array_equal(got, brute_knn(x, k))
    got = knn(x, 4)
    assert got[3].tolist() == [3, 5, 17, 99, 150]         # itself first, then ties by index
    assert got[99].tolist() == [99, 3, 5, 17, 150]


def test_knn_many_duplicates_uses_exact_fallback():
    # identical rows: more ties than candidates, so the error bound cannot prove the
    # candidate set; 40 duplicates fit the float64 retry's larger candidate set, 100 do
    # not and need the full exact pass
    rng = np.random.default_rng(2)
    for dups, full in ((40, False), (100, True)):
        x = rng.random((150, 4))
        x[10:10 + dups] = x[10]
        got, stats = knn(x, 3, block_size=50, return_stats=True)
        assert stats["rows_refined"] >= dups and (stats["rows_full_pass"] > 0) == full
        np.testing.assert_array_equal(got, brute_knn(x, 3))
        assert got[40].tolist() == [40, 10, 11, 12]
    np.testing.assert_array_equal(_full_rows(x, np.array([0, 40]), 3), brute_knn(x, 3)[[0, 40]])


def test_knn_k_equals_n_minus_1_and_int_input():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=(25, 3))
    np.testing.assert_array_equal(knn(x, 24, block_size=4), brute_knn(x, 24))
    got = knn(x.astype(np.float32), 24)
    assert sorted(got[7].tolist()) == list(range(25)) and got[7, 0] == 7


def test_knn_block_size_does_not_change_the_result():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(230, 8)).astype(np.float32)
    ref = knn(x, 30, block_size=230)
    for block in (1, 17, 100, 5000):
        np.testing.assert_array_equal(knn(x, 30, block_size=block), ref)


def test_knn_float64_input_with_large_offset():
    # large common offset: float32 cancellation is large, the exact step must fix the order
    rng = np.random.default_rng(5)
    x = 1000.0 + rng.random((120, 10))
    np.testing.assert_array_equal(knn(x, 8, block_size=50), brute_knn(x, 8))
    y = 1e16 * rng.random((120, 10))                 # too large for float32 squares
    np.testing.assert_array_equal(knn(y, 8, block_size=50), brute_knn(y, 8))


def test_knn_bad_input():
    x = np.zeros((10, 3), np.float32)
    with pytest.raises(ValueError, match="k=10 .* only 10 rows"):
        knn(x, 10)
    with pytest.raises(ValueError, match="at least 1"):
        knn(x, 0)
    y = x.copy()
    y[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf .*row 4"):
        knn(y, 2)
    y[4, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        knn(y, 2)
    with pytest.raises(ValueError, match="2-D"):
        knn(np.zeros(10), 2)
    with pytest.raises(ValueError, match="block_size"):
        knn(x, 2, block_size=0)
    with pytest.raises(ValueError, match="numeric"):
        knn(np.array([["a"], ["b"], ["c"]]), 1)
