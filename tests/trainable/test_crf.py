import itertools
import math

import pytest
import torch

from trainable.crf import CRF

K = 3


def _crf(bio_constraints=False, seed=0):
    torch.manual_seed(seed)
    crf = CRF(K, bio_constraints=bio_constraints)
    with torch.no_grad():  # larger than the init range, so paths differ clearly
        for p in crf.parameters():
            p.normal_(0, 1.0)
    return crf


def _batch(seed=0):
    """Masks with a leading masked prefix (like question tokens), trailing padding, all-masked."""
    g = torch.Generator().manual_seed(seed)
    emissions = torch.randn(4, 6, K, generator=g) * 2
    mask = torch.tensor([[0, 0, 1, 1, 1, 0],
                         [1, 1, 1, 1, 0, 0],
                         [0, 0, 0, 0, 0, 0],
                         [0, 1, 0, 1, 1, 0]], dtype=torch.bool)
    tags = torch.randint(0, K, (4, 6), generator=g)
    tags[~mask] = -100  # like the feature contract: -100 outside the context
    return emissions, tags, mask


def _score(crf, em, path):
    s = crf.start_transitions[path[0]] + crf.end_transitions[path[-1]]
    s = s + sum(em[t, k] for t, k in enumerate(path))
    return s + sum(crf.transitions[a, b] for a, b in zip(path, path[1:], strict=False))


def _brute(crf, emissions, tags, mask, allowed_only=False):
    """log p(gold) by enumerating every tag path, and the best path, per row."""
    lls, best = [], []
    for b in range(emissions.shape[0]):
        em, gold = emissions[b][mask[b]], tags[b][mask[b]].tolist()
        if not gold:
            lls.append(0.0)
            best.append([])
            continue
        paths = list(itertools.product(range(K), repeat=len(gold)))
        with torch.no_grad():
            scores = {p: _score(crf, em, p).item() for p in paths}
        log_z = math.log(sum(math.exp(s) for s in scores.values()))
        lls.append(scores[tuple(gold)] - log_z)
        if allowed_only:
            paths = [p for p in paths if p[0] != 2 and (0, 2) not in zip(p, p[1:], strict=False)]
        best.append(list(max(paths, key=scores.__getitem__)))
    return torch.tensor(lls), best


@pytest.mark.parametrize("seed", range(3))
def test_log_likelihood_matches_brute_force(seed):
    crf = _crf(seed=seed)
    emissions, tags, mask = _batch(seed)
    expected, _ = _brute(crf, emissions, tags, mask)
    got = crf.log_likelihood(emissions, tags, mask)
    assert got.dtype == torch.float32 and got.shape == (4,)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert got[2] == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_viterbi_matches_brute_force_argmax(seed):
    crf = _crf(seed=seed)
    emissions, tags, mask = _batch(seed)
    _, expected = _brute(crf, emissions, tags, mask)
    assert crf.decode(emissions, mask) == expected


@pytest.mark.parametrize("seed", range(3))
def test_bio_constraints_restrict_decoding_not_likelihood(seed):
    crf = _crf(bio_constraints=True, seed=seed)
    with torch.no_grad():  # make the forbidden moves attractive so the constraint has to act
        crf.start_transitions[2] += 5
        crf.transitions[0, 2] += 5
    emissions, tags, mask = _batch(seed)
    expected_ll, expected_paths = _brute(crf, emissions, tags, mask, allowed_only=True)
    _, unconstrained = _brute(crf, emissions, tags, mask)
    assert expected_paths != unconstrained  # the case does exercise the constraint
    assert crf.decode(emissions, mask) == expected_paths
    torch.testing.assert_close(crf.log_likelihood(emissions, tags, mask), expected_ll, rtol=1e-5, atol=1e-5)


def test_bio_constraints_default_on_for_three_tags():
    assert CRF(3).bio_constraints and not CRF(4).bio_constraints
    with pytest.raises(ValueError, match="O, B, I"):
        CRF(5, bio_constraints=True)


def test_gradients_flow_to_emissions_and_scores():
    crf = _crf()
    emissions, tags, mask = _batch()
    emissions.requires_grad_(True)
    loss = -crf.log_likelihood(emissions, tags, mask).mean()
    loss.backward()
    for p in crf.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert torch.isfinite(emissions.grad).all()
    assert (emissions.grad[~mask] == 0).all()  # masked positions do not influence the loss
    assert emissions.grad[mask].abs().sum() > 0


def test_training_fits_the_gold_tags():
    crf = CRF(K, bio_constraints=False)  # the random gold paths are not all valid BIO
    emissions, tags, mask = _batch(1)
    emissions = torch.zeros_like(emissions, requires_grad=True)
    opt = torch.optim.Adam([emissions, *crf.parameters()], lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        (-crf.log_likelihood(emissions, tags, mask).sum()).backward()
        opt.step()
    assert crf.decode(emissions.detach(), mask) == [tags[b][mask[b]].tolist() for b in range(4)]


def test_works_under_bf16_autocast():
    crf = _crf()
    emissions, tags, mask = _batch()
    layer = torch.nn.Linear(K, K)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        em = layer(emissions)
        assert em.dtype == torch.bfloat16
        ll = crf.log_likelihood(em, tags, mask)
        paths = crf.decode(em, mask)
        ll.sum().backward()
    assert ll.dtype == torch.float32 and torch.isfinite(ll).all()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
    assert [len(p) for p in paths] == mask.sum(1).tolist()
    # the bf16 emissions are the only lossy step: same result as float32 on the rounded values
    expected = crf.log_likelihood(em.detach().float(), tags, mask)
    torch.testing.assert_close(ll.detach(), expected, rtol=1e-5, atol=1e-5)


def test_invalid_input_is_rejected():
    crf = _crf()
    emissions, tags, mask = _batch()
    tags[0, 2] = -100  # an unmasked position without a tag
    with pytest.raises(ValueError, match="mask out positions"):
        crf.log_likelihood(emissions, tags, mask)
    with pytest.raises(ValueError, match="emissions"):
        crf.decode(emissions[..., :2], mask)


def test_all_masked_batch():
    crf = _crf()
    emissions = torch.randn(2, 3, K)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    assert crf.decode(emissions, mask) == [[], []]
    assert crf.log_likelihood(emissions, torch.zeros(2, 3, dtype=torch.long), mask).tolist() == [0.0, 0.0]
