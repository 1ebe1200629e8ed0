"""A batched, masked linear-chain CRF for the ``span_crf`` head (BIO tags over context tokens).

The span_crf features mask the question and special tokens, so each row's valid positions
start somewhere in the middle of the window (and padding follows). Every method first
left-compacts the valid positions of each row (stable order), which turns any mask into the
usual "prefix of length L" case that the forward algorithm and Viterbi expect; a row with no
valid position has log-likelihood 0 and an empty path.

All arithmetic runs in float32 with autocast off: the forward algorithm sums many log-space
terms and bf16/fp16 would lose the differences that carry the gradient.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from data_prep.features import TAG_I, TAG_O  # the BIO tag ids of the feature contract

_FORBIDDEN = -1e4  # finite, so a decoder with a hand-made over-strict constraint still returns a path


class CRF(nn.Module):
    """Linear-chain CRF: start, end and transition scores (``transitions[i, j]`` = tag i -> tag j).

    ``bio_constraints`` (default: on when ``num_tags == 3``) forbids O->I and start->I in
    ``decode`` so predicted tag paths are always valid BIO. Training (``log_likelihood``) stays
    unconstrained, as in AllenNLP's CRF: a window cut inside an answer legitimately starts its
    context with I, and a constrained normaliser would give such gold paths probability zero.

    ``EAGER_METHODS`` are never compiled: ``trainable.loop.compile_model`` wraps them in
    ``torch.compiler.disable`` when it compiles a model. (As a decorator here, that would import
    torch._dynamo, 1.5 s, into every process that imports the models, compiling or not.)
    """

    EAGER_METHODS = ("log_likelihood",)

    def __init__(self, num_tags: int, bio_constraints: bool | None = None):
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"CRF needs num_tags >= 1, got {num_tags}")
        if bio_constraints is None:
            bio_constraints = num_tags == 3
        if bio_constraints and num_tags != 3:
            raise ValueError(f"bio_constraints needs the 3 tags O, B, I; got num_tags={num_tags}")
        self.num_tags = num_tags
        self.bio_constraints = bio_constraints
        self.start_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        allowed_start = torch.ones(num_tags, dtype=torch.bool)
        allowed = torch.ones(num_tags, num_tags, dtype=torch.bool)
        if bio_constraints:
            allowed_start[TAG_I] = False
            allowed[TAG_O, TAG_I] = False
        # derived from the flags, so not part of the state dict
        self.register_buffer("allowed_start", allowed_start, persistent=False)
        self.register_buffer("allowed_transitions", allowed, persistent=False)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, bio_constraints={self.bio_constraints}"

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.log_likelihood(emissions, tags, mask)

    def log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log p(tags | emissions) per row, shape [B], float32; 0 for rows without valid positions.

        emissions [B, T, K] (any float dtype), tags [B, T] long (anything, e.g. -100, where masked),
        mask [B, T] bool. Use ``-log_likelihood(...).mean()`` (or a sum over rows) as the loss.

        Never compiled: its loop runs once per position, so dynamo would unroll it into a graph per
        sequence length (minutes of compiling each on a GPU). Nothing here reads a device value on
        the host, so the step it belongs to never waits: the loop runs over the whole window width
        (masked positions carry the state through), and the tag range is checked only on CPU tensors,
        where checking costs no synchronisation (the features' contract guarantees it elsewhere).
        """
        self._check_shapes(emissions, mask, tags)
        with torch.autocast(emissions.device.type, enabled=False):
            em, cmask, lengths, tags = self._compact(emissions.float(), mask, tags)
            if em.shape[1] == 0:
                return em.new_zeros(em.shape[0])
            tags = tags.masked_fill(~cmask, 0)
            if tags.device.type == "cpu" and bool(((tags < 0) | (tags >= self.num_tags)).any()):
                raise ValueError(f"CRF tags at unmasked positions must be in [0, {self.num_tags}); "
                                 "mask out positions tagged -100")
            gold = self._path_score(em, tags, cmask, lengths)
            log_z = self._log_partition(em, cmask)
            return torch.where(lengths > 0, gold - log_z, torch.zeros_like(gold))

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi: the best tag path of each row over its valid positions.

        ``paths[b][j]`` is the tag of the j-th valid position of row b, i.e. of token
        ``mask[b].nonzero()[j]``; index the window's offsets the same way to get characters.
        """
        self._check_shapes(emissions, mask)
        with torch.autocast(emissions.device.type, enabled=False):
            em, cmask, lengths, _ = self._compact(emissions.float(), mask)
            if em.shape[1] == 0:
                return [[] for _ in range(em.shape[0])]
            start = self.start_transitions.float().masked_fill(~self.allowed_start, _FORBIDDEN)
            trans = self.transitions.float().masked_fill(~self.allowed_transitions, _FORBIDDEN)
            score = start + em[:, 0]
            history = []
            for t in range(1, em.shape[1]):
                best, idx = (score.unsqueeze(2) + trans).max(dim=1)  # best previous tag per next tag
                score = torch.where(cmask[:, t, None], best + em[:, t], score)
                history.append(idx)
            last = (score + self.end_transitions.float()).argmax(dim=1)
        return _backtrack(last.cpu().numpy(), [h.cpu().numpy() for h in history], lengths.cpu().numpy())

    def _path_score(self, em, tags, cmask, lengths) -> torch.Tensor:
        """Unnormalised score of the given tag path (start + emissions + transitions + end)."""
        maskf = cmask.float()
        emit = (em.gather(2, tags.unsqueeze(2)).squeeze(2) * maskf).sum(1)
        trans = self.transitions.float()[tags[:, :-1], tags[:, 1:]]
        between = (trans * maskf[:, 1:]).sum(1)
        last_tag = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        start = self.start_transitions.float()[tags[:, 0]]
        return start + emit + between + self.end_transitions.float()[last_tag]

    def _log_partition(self, em, cmask) -> torch.Tensor:
        """Forward algorithm: log of the summed exp-score over all K^L tag paths of each row."""
        trans = self.transitions.float()
        alpha = self.start_transitions.float() + em[:, 0]
        for t in range(1, em.shape[1]):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans + em[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(cmask[:, t, None], nxt, alpha)
        return torch.logsumexp(alpha + self.end_transitions.float(), dim=1)

    @staticmethod
    def _compact(em: torch.Tensor, mask: torch.Tensor, tags: torch.Tensor | None = None):
        """Move each row's valid positions to the front (keeping their order), at the full width:
        trimming to the longest row would read that length back to the host (a sync per step)."""
        mask = mask.bool()
        lengths = mask.sum(1)
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
        em = em.gather(1, order.unsqueeze(2).expand(-1, -1, em.shape[2]))
        cmask = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0) < lengths.unsqueeze(1)
        tags = tags.long().gather(1, order) if tags is not None else None
        return em, cmask, lengths, tags

    def _check_shapes(self, emissions, mask, tags=None) -> None:
        if emissions.dim() != 3 or emissions.shape[2] != self.num_tags:
            raise ValueError(f"CRF emissions must be [batch, seq, {self.num_tags}], "
                             f"got {tuple(emissions.shape)}")
        for name, t in (("mask", mask), ("tags", tags)):
            if t is not None and t.shape != emissions.shape[:2]:
                raise ValueError(f"CRF {name} must be {tuple(emissions.shape[:2])}, got {tuple(t.shape)}")


def _backtrack(last: np.ndarray, history: list[np.ndarray], lengths: np.ndarray) -> list[list[int]]:
    paths = []
    for b, length in enumerate(lengths.tolist()):
        if length == 0:
            paths.append([])
            continue
        path = [int(last[b])]
        for t in range(length - 1, 0, -1):  # history[t - 1] maps the tag at t to the best at t - 1
            path.append(int(history[t - 1][b, path[-1]]))
        paths.append(path[::-1])
    return paths
