"""Quarter-turn mapping of boxes and points back to the unrotated photo, checked on marked pixels."""

from __future__ import annotations

import numpy as np
import pytest

from faceindex.pipeline.rotation import rotate, unrotate_box, unrotate_point


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_a_marked_pixel_maps_back_to_where_it_was(turns):
    height, width = 5, 8
    image = np.zeros((height, width), np.uint8)
    image[1, 6] = 255  # pixel centre at (x, y) = (6.5, 1.5)
    turned = rotate(image, turns)
    assert turned.flags["C_CONTIGUOUS"] and turned.shape == ((height, width) if turns % 2 == 0 else (width, height))
    row, col = np.argwhere(turned == 255)[0]
    assert unrotate_point(col + 0.5, row + 0.5, turns, width, height) == pytest.approx((6.5, 1.5))


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_a_box_maps_back_to_the_region_it_covered(turns):
    height, width = 30, 40
    image = np.zeros((height, width), np.uint8)
    image[5:12, 20:34] = 1  # box (left 20, top 5, right 34, bottom 12), right/bottom exclusive
    rows, cols = np.nonzero(rotate(image, turns))
    turned_box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    assert unrotate_box(turned_box, turns, width, height) == (20, 5, 34, 12)
