"""Decoding on oneDNN-reordered weights: the plain model's numbers, weights read on entry,
every layer restored on exit."""

import pytest
import torch
from torch import nn

from rlvr.models import tiny_random
from rlvr.packed import available, packable, packed_linear, packed_linears

pytestmark = pytest.mark.skipif(not available(), reason="this torch build has no oneDNN")


@pytest.fixture
def model():
    model, _ = tiny_random(seed=5)
    return model.eval()


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_packed_layers_give_the_plain_logits_and_are_restored(model):
    ids = torch.randint(0, 1000, (3, 9), generator=torch.Generator().manual_seed(0))
    plain = logits(model, ids)
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    with packed_linears(model) as count:
        assert count == len(linears) > 0
        assert all(m.forward.func is packed_linear for m in linears)
        packed = logits(model, ids)
    assert all("forward" not in m.__dict__ for m in linears)
    torch.testing.assert_close(packed, plain, rtol=1e-4, atol=1e-5)
    assert torch.equal(logits(model, ids), plain)  # back on the unpacked path, bit for bit


def test_weights_are_read_on_entry(model):
    ids = torch.randint(0, 1000, (2, 5), generator=torch.Generator().manual_seed(1))
    with packed_linears(model):
        before = logits(model, ids)
    with torch.no_grad():
        for p in model.parameters():  # as an optimizer step would, in place
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)) * 0.05)
    with packed_linears(model):
        after = logits(model, ids)
    assert (after - before).abs().max() > 0.1
    torch.testing.assert_close(after, logits(model, ids), rtol=1e-4, atol=1e-5)


def test_restored_after_an_error_and_skipped_when_off_or_not_float32(model):
    with pytest.raises(KeyError), packed_linears(model):
        raise KeyError("inside")
    assert not any("forward" in m.__dict__ for m in model.modules())
    with packed_linears(model, enabled=False) as count:
        assert count == 0
    half = model.to(torch.bfloat16)
    assert not any(packable(m) for m in half.modules())
    with packed_linears(half) as count:
        assert count == 0
