"""What a user hands in becomes the model input they meant (issue 14: arrays, high bit depths)."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import inv_widgets as inv
from inv_widgets.inputs import to_model_input


def test_a_float_chw_array_is_model_input_like_the_tensor(demo):
    model, data = demo
    x = data[0][0]
    assert float(x.min()) < 0  # normalised model input
    as_tensor = inv.explain(model, x, class_names=data.classes)
    as_array = inv.explain(model, x.numpy(), class_names=data.classes)
    assert as_array.predicted == as_tensor.predicted
    assert as_array.image_id == as_tensor.image_id
    torch.testing.assert_close(to_model_input(x.numpy()[None]), x)


def test_a_normalised_array_laid_out_as_an_image_is_refused_not_clipped(demo):
    _, data = demo
    hwc = np.moveaxis(data[0][0].numpy(), 0, -1)
    with pytest.raises(ValueError, match="channels-first"):
        to_model_input(hwc)


@pytest.mark.parametrize("bits", [10, 12, 14])
def test_a_16_bit_file_holding_fewer_bits_is_scaled_by_its_own_range(demo, bits):
    model, data = demo
    gray = np.asarray(data.image(1).convert("L"))
    top = 2**bits - 1
    deep = Image.fromarray((gray.astype(np.uint32) * top // 255).astype(np.uint16))
    assert deep.mode == "I;16"
    with pytest.warns(UserWarning, match=f"{bits}-bit"):
        x = to_model_input(deep)
    x8 = to_model_input(Image.fromarray(gray))
    assert float((x - x8).abs().max()) <= 1 / 255 + 1e-6
    assert (
        inv.explain(model, deep, class_names=data.classes, transform=data.transform).predicted
        == inv.explain(model, Image.fromarray(gray), class_names=data.classes, transform=data.transform).predicted
    )


def test_a_full_16_bit_image_is_scaled_by_65535_without_a_warning():
    a = np.zeros((4, 4), np.uint16)
    a[0, 0] = 60000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = to_model_input(Image.fromarray(a))
    assert float(x.max()) == pytest.approx(60000 / 65535, abs=0.01)
