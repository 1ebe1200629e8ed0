import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainable.losses import class_alpha, focal_loss, inside_bce, inside_targets, marginal_nll


def _data(n=64, c=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 3, torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("c", [2, 4])
def test_gamma_zero_is_weighted_cross_entropy(reduction, c):
    logits, targets = _data(c=c)
    alpha = torch.rand(c) + 0.1
    expected = F.cross_entropy(logits, targets, weight=alpha, reduction=reduction)
    got = focal_loss(logits, targets, alpha=alpha, gamma=0.0, reduction=reduction)
    torch.testing.assert_close(got, expected)
    unweighted = F.cross_entropy(logits, targets, reduction=reduction)
    torch.testing.assert_close(focal_loss(logits, targets, gamma=0.0, reduction=reduction), unweighted)


def test_mean_is_the_weighted_mean():
    logits, targets = _data()
    alpha = torch.tensor([0.25, 1.75])
    per_example = focal_loss(logits, targets, alpha, gamma=2.0, reduction="none")
    w = alpha[targets]
    torch.testing.assert_close(focal_loss(logits, targets, alpha, gamma=2.0), per_example.sum() / w.sum())


def test_gamma_down_weights_easy_examples():
    logits = torch.tensor([[4.0, -4.0], [0.2, -0.2]])  # an easy and a hard example of class 0
    targets = torch.tensor([0, 0])
    ce = focal_loss(logits, targets, gamma=0.0, reduction="none")
    fl = focal_loss(logits, targets, gamma=2.0, reduction="none")
    assert (fl < ce).all()
    ratio = fl / ce
    assert ratio[0] < 1e-5 < ratio[1]  # (1-p)^2: ~1e-7 for the easy one, ~0.16 for the hard one
    p = torch.softmax(logits, -1)[:, 0]
    torch.testing.assert_close(ratio, (1 - p) ** 2)


def test_gradients_finite_for_saturated_logits():
    logits = torch.tensor([[60.0, -60.0], [0.0, 0.0]], requires_grad=True)
    targets = torch.tensor([0, 1])
    for gamma in (0.0, 0.5, 2.0):
        logits.grad = None
        focal_loss(logits, targets, gamma=gamma).backward()
        assert torch.isfinite(logits.grad).all(), gamma


def test_bf16_autocast_returns_finite_float32():
    logits, targets = _data()
    layer = torch.nn.Linear(2, 2)
    alpha = class_alpha(targets.numpy())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(logits)
        assert out.dtype == torch.bfloat16
        loss = focal_loss(out, targets, alpha=alpha)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all()
    torch.testing.assert_close(loss, focal_loss(out.detach().float(), targets, alpha=alpha))


def test_class_alpha_inverse_frequency():
    alpha = class_alpha(np.array([0] * 30 + [1] * 10))
    assert alpha.dtype == torch.float32
    torch.testing.assert_close(alpha, torch.tensor([0.5, 1.5]))
    assert float(alpha.sum()) == pytest.approx(2.0)


def test_class_alpha_absent_class_gets_one():
    alpha = class_alpha(np.array([0, 0, 0, 2]), num_classes=3)
    torch.testing.assert_close(alpha, torch.tensor([0.5, 1.0, 1.5]))
    torch.testing.assert_close(class_alpha(np.array([], dtype=np.int64)), torch.ones(2))
    torch.testing.assert_close(class_alpha(np.array([1, 1])), torch.ones(2))


def test_invalid_arguments():
    logits, targets = _data()
    with pytest.raises(ValueError, match="gamma"):
        focal_loss(logits, targets, gamma=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        focal_loss(logits, targets, reduction="avg")
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        class_alpha(np.array([0, 1, 2]))


def test_marginal_nll_is_cross_entropy_for_one_target_and_sums_the_mass_of_several():
    torch.manual_seed(0)
    logits = torch.randn(3, 7)
    one = torch.zeros(3, 7, dtype=torch.int8)
    one[torch.arange(3), torch.tensor([0, 4, 6])] = 1
    assert marginal_nll(logits, one) == pytest.approx(float(F.cross_entropy(logits, torch.tensor([0, 4, 6]))))
    two = one.clone()
    two[:, 2] = 1
    p = logits.softmax(-1)
    expected = -(p[torch.arange(3), torch.tensor([0, 4, 6])] + p[:, 2]).log().mean()
    assert marginal_nll(logits, two) == pytest.approx(float(expected), rel=1e-5)


def _rows(*positions, length=10):
    out = torch.zeros(len(positions), length, dtype=torch.int8)
    for row, cols in enumerate(positions):
        out[row, list(cols)] = 1
    return out


def test_inside_targets_cover_every_answer_token():
    # row 0: answers at tokens 2..4 and 7..7; row 1: no answer ([CLS]); row 2: one answer to the end
    starts = _rows((2, 7), (0,), (6,))
    ends = _rows((4, 7), (0,), (9,))
    expected = [[0, 0, 1, 1, 1, 0, 0, 1, 0, 0],
                [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]]
    assert inside_targets(starts, ends).tolist() == expected


def test_inside_bce_sums_each_window_and_skips_cls_and_padding():
    starts, ends = _rows((2,), (0,)), _rows((3,), (0,))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 5:] = 0
    logits = torch.randn(2, 10)
    target = inside_targets(starts, ends)
    keep = mask.bool().clone()
    keep[:, 0] = False
    expected = F.binary_cross_entropy_with_logits(logits[keep], target[keep], reduction="sum") / 2
    torch.testing.assert_close(inside_bce(logits, starts, ends, mask), expected)
    changed = logits.clone()
    changed[:, 0] += 5.0  # [CLS]
    changed[1, 7] -= 5.0  # padding
    torch.testing.assert_close(inside_bce(changed, starts, ends, mask), expected)
