"""Decoding on oneDNN-reordered weights: the plain model's numbers, weights read on entry,
every layer restored on exit."""

import pytest
import torch
from torch import nn

from rlvr.cpu.onednn import available, onednn_linear, onednn_linears, reorderable
from rlvr.models import tiny_random

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
    with onednn_linears(model) as count:
        assert count == len(linears) > 0
        assert all(m.forward.func is onednn_linear for m in linears)
        packed = logits(model, ids)
    assert all("forward" not in m.__dict__ for m in linears)
    torch.testing.assert_close(packed, plain, rtol=1e-4, atol=1e-5)
    assert torch.equal(logits(model, ids), plain)  # back on the unpacked path, bit for bit


def test_weights_are_read_on_entry(model):
    ids = torch.randint(0, 1000, (2, 5), generator=torch.Generator().manual_seed(1))
    with onednn_linears(model):
        before = logits(model, ids)
    with torch.no_grad():
        for p in model.parameters():  # as an optimizer step would, in place
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)) * 0.05)
    with onednn_linears(model):
        after = logits(model, ids)
    assert (after - before).abs().max() > 0.1
    torch.testing.assert_close(after, logits(model, ids), rtol=1e-4, atol=1e-5)


def test_restored_after_an_error_and_skipped_when_off_or_not_float32(model):
    with pytest.raises(KeyError), onednn_linears(model):
        raise KeyError("inside")
    assert not any("forward" in m.__dict__ for m in model.modules())
    with onednn_linears(model, enabled=False) as count:
        assert count == 0
    half = model.to(torch.bfloat16)
    assert not any(reorderable(m) for m in half.modules())
    with onednn_linears(half) as count:
        assert count == 0


def test_reorder_once_hands_out_one_copy_within_the_block():
    from rlvr.cpu.onednn import _HELD, reorder_once, reorder_weight

    weight = torch.randn(64, 32)
    assert reorder_weight(weight) is not reorder_weight(weight)  # outside a block: a fresh reorder per call
    with reorder_once(weight) as held:
        assert held
        first = reorder_weight(weight)
        assert reorder_weight(weight) is first and reorder_weight(weight.detach()) is first
        assert reorder_weight(torch.randn(64, 32)) is not first  # another weight is not served from it
        with reorder_once(weight) as nested:  # an enclosing block keeps its copy
            assert nested and reorder_weight(weight) is first
        assert reorder_weight(weight) is first
    assert not _HELD
    with pytest.raises(KeyError), reorder_once(weight):
        raise KeyError("inside")
    assert not _HELD
    with reorder_once(weight.to(torch.bfloat16)) as held:
        assert not held and not _HELD


def test_update_reorders_the_fused_head_once_per_optimizer_step(monkeypatch):
    """The tied [vocab, hidden] head weight is reordered once for all micro-batches of a step."""
    import rlvr.cpu.onednn
    from tests.learner.test_update import grouped_rows, update_gradients

    reorders = []
    real = rlvr.cpu.onednn._reorder

    def counting(weight):
        reorders.append(tuple(weight.shape))
        return real(weight)

    monkeypatch.setattr(rlvr.cpu.onednn, "_reorder", counting)
    rows = grouped_rows(prompts=3, group=4)
    batches, _, _ = update_gradients(rows, [1.0] * len(rows), size=3, share=True, chunk=8)
    model, _ = tiny_random(seed=1)
    head_shape = tuple(model.get_output_embeddings().weight.shape)
    assert len(batches) == 4 and reorders == [head_shape]
