"""A Hugging Face encoder with one head per task (span, span_crf, pair).

The head computes its loss in float32 (outside autocast's low precision) so bf16/fp16 runs
stay stable; ``forward`` returns a dict so DDP and torch.compile see one module.

What differs between encoder families is decided here, from the encoder's config and class:
the attention implementation (``attention_implementation``) and whether token type ids are fed
(``takes_token_type_ids``). ``pair`` is the family's own ``...ForSequenceClassification`` (BERT's pooler,
RoBERTa's and ELECTRA's classification heads, DeBERTa's context pooler), so its checkpoint is a standard
transformers model; ``span`` and ``span_crf`` put a linear layer over the encoder's token states.
Features and batches carry token type ids whenever the tokenizer emits them; the model drops them when
the encoder has no token type embeddings.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PretrainedConfig
from transformers.utils import logging as hf_logging

from data_prep.features import TAG_IGNORE
from plumbing.errors import ConfigError, UserError
from trainable.crf import CRF
from trainable.losses import focal_loss, inside_bce, marginal_nll

# Dropout attribute names across encoder families (BERT/RoBERTa/DeBERTa, DistilBERT, ...).
HIDDEN_DROPOUT = ("hidden_dropout_prob", "dropout")
ATTENTION_DROPOUT = ("attention_probs_dropout_prob", "attention_dropout")
# span: start, end and "inside the answer" (an auxiliary training signal, see losses.inside_bce)
NUM_OUTPUTS = {"span": 3, "span_crf": 3}
# pair: the classifier's labels (its config.json's id2label, what pipeline("text-classification") names)
PAIR_LABELS = {0: "not_evidence", 1: "evidence"}


def encoder_config(name_or_dir: str, dropout: float | None = None) -> PretrainedConfig:
    """The encoder's HF config, with the dropout override applied."""
    try:
        config = AutoConfig.from_pretrained(name_or_dir)
    except (OSError, ValueError) as e:
        raise UserError(
            f"model '{name_or_dir}' was not found: it is not a local directory and it could not be "
            f"fetched from the Hugging Face hub (offline, or no such model; {str(e).splitlines()[0]}). "
            "Point model.name at a local directory holding config.json, the weights and the "
            "tokenizer files (e.g. one written by save_pretrained), download it while online, "
            "or use model.name=tiny (or tiny-deberta)."
        ) from None
    if dropout is not None:
        for name in HIDDEN_DROPOUT + ATTENTION_DROPOUT:
            if hasattr(config, name):
                setattr(config, name, dropout)
    return config


def attention_implementation(config: PretrainedConfig) -> str | None:
    """``sdpa`` when the encoder class implements it (BERT, RoBERTa, ELECTRA, ...), else ``eager``
    (DeBERTa-v2/v3 has only its own attention); None (transformers' default) for a config the
    auto classes do not map, e.g. remote code."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    try:
        encoder_class = MODEL_MAPPING[type(config)]
    except KeyError:
        return None
    return "sdpa" if getattr(encoder_class, "_supports_sdpa", False) else "eager"


def takes_token_type_ids(config: PretrainedConfig) -> bool:
    """Whether the encoder has token type (segment) embeddings to feed.

    BERT has two types. DeBERTa-v3 has ``type_vocab_size=0`` (no embedding; its tokenizer still
    emits type ids, which transformers would replace by zeros), RoBERTa has one (type 0 only: a
    type id 1 would index out of range), DistilBERT none (its forward takes no token_type_ids).
    """
    return (getattr(config, "type_vocab_size", 0) or 0) > 1


def _load_transformer(name_or_dir: str, config: PretrainedConfig, task: str, pretrained: bool) -> nn.Module:
    """The encoder (span, span_crf) or the family's sequence classifier over it (pair)."""
    attn = attention_implementation(config)
    kwargs = {"attn_implementation": attn} if attn else {}
    if task == "pair":
        config.num_labels, config.id2label = len(PAIR_LABELS), dict(PAIR_LABELS)
        config.label2id = {v: k for k, v in PAIR_LABELS.items()}
        if pretrained:
            return _pretrained_classifier(name_or_dir, config, **kwargs)
        return AutoModelForSequenceClassification.from_config(config, **kwargs)
    if pretrained:
        encoder = AutoModel.from_pretrained(name_or_dir, config=config, **kwargs)
    else:
        encoder = AutoModel.from_config(config, **kwargs)
    if getattr(encoder, "pooler", None) is not None:
        # The span heads read token states, never the pooler; parameters without a gradient would make
        # DDP fail ("did not receive grad"), so drop it.
        encoder.pooler = None
    return encoder


def _pretrained_classifier(name_or_dir: str, config: PretrainedConfig, **kwargs) -> nn.Module:
    """The family's sequence classifier on pretrained encoder weights. Its classification head is new by
    design, so transformers' load report (a table of "MISSING" head weights at every trial start) is held
    back; encoder weights the checkpoint lacks are still worth a warning."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            name_or_dir, config=config, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(k for k in info["missing_keys"] if k.startswith(model.base_model_prefix + "."))
    if missing:
        warnings.warn(f"model '{name_or_dir}': {len(missing)} encoder weights are not in its checkpoint and start "
                      f"from random values ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})",
                      stacklevel=2)
    return model


class TaskModel(nn.Module):
    """The task's transformer and head. ``forward(**batch)`` -> {"loss", and the head's outputs}.

    ``transformer`` is the encoder for span/span_crf (with ``head`` over its token states) and the family's
    ``...ForSequenceClassification`` for pair; ``base_model`` is the encoder in both (as in transformers)."""

    def __init__(self, transformer: nn.Module, task: str, focal_gamma: float = 2.0,
                 class_alpha: torch.Tensor | None = None, inside_weight: float = 0.0):
        super().__init__()
        self.task, self.focal_gamma, self.inside_weight = task, focal_gamma, inside_weight
        config = transformer.config
        self.uses_token_type_ids = takes_token_type_ids(config)
        if task == "pair":
            self.classifier = transformer
        else:
            self.encoder = transformer
            p = next((getattr(config, n) for n in HIDDEN_DROPOUT if hasattr(config, n)), 0.1)
            self.dropout = nn.Dropout(p if isinstance(p, float) else 0.1)
            self.head = nn.Linear(config.hidden_size, NUM_OUTPUTS[task])
        self.crf = CRF(3) if task == "span_crf" else None
        alpha = class_alpha if class_alpha is not None else torch.full((2,), 0.5)
        self.register_buffer("class_alpha", alpha.float().clone())

    @property
    def base_model(self) -> nn.Module:
        """The encoder (``AutoModel``'s class of the family), whatever the task."""
        return self.classifier.base_model if self.task == "pair" else self.encoder

    def forward(self, input_ids, attention_mask, token_type_ids=None, start_positions=None,
                end_positions=None, tags=None, label=None, start_targets=None,
                end_targets=None) -> dict[str, torch.Tensor]:
        use_types = token_type_ids is not None and self.uses_token_type_ids
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask,
                  **({"token_type_ids": token_type_ids} if use_types else {})}
        if self.task == "pair":
            logits = self.classifier(**kwargs).logits.float()
            out = {"logits": logits}
            if label is not None:
                out["loss"] = focal_loss(logits, label, self.class_alpha, self.focal_gamma)
            return out
        scores = self.head(self.dropout(self.encoder(**kwargs).last_hidden_state)).float()
        if self.task == "span_crf":
            out = {"emissions": scores}
            if tags is not None:
                mask = tags != TAG_IGNORE
                out["loss"] = -self.crf.log_likelihood(scores, tags, mask).mean()
            return out
        pad = attention_mask == 0
        start = scores[..., 0].masked_fill(pad, -1e4)
        end = scores[..., 1].masked_fill(pad, -1e4)
        out = {"start_logits": start, "end_logits": end}
        if start_targets is not None:
            out["loss"] = (marginal_nll(start, start_targets) + marginal_nll(end, end_targets)) / 2
            if self.inside_weight:
                inside = inside_bce(scores[..., 2], start_targets, end_targets, attention_mask)
                out["loss"] = out["loss"] + self.inside_weight * inside
        elif start_positions is not None:
            ce = nn.functional.cross_entropy
            out["loss"] = (ce(start, start_positions) + ce(end, end_positions)) / 2
        return out


def build_model(name_or_dir: str, task: str, *, dropout: float | None = None, focal_gamma: float = 2.0,
                class_alpha: torch.Tensor | None = None, gradient_checkpointing: bool = False,
                pretrained: bool = True, inside_weight: float = 0.0) -> TaskModel:
    """The task model on ``name_or_dir``'s encoder (``pretrained=False``: same shapes, random
    weights, for loading a checkpoint's state dict)."""
    config = encoder_config(name_or_dir, dropout)
    try:
        transformer = _load_transformer(name_or_dir, config, task, pretrained)
    except OSError as e:
        raise UserError(f"model '{name_or_dir}': could not load the weights ({str(e).splitlines()[0]}). "
                        "Point model.name at a directory with config.json and model weights, "
                        "or use model.name=tiny.") from None
    if gradient_checkpointing:
        if not transformer.supports_gradient_checkpointing:
            raise ConfigError("training.gradient_checkpointing", f"{type(transformer).__name__} ({name_or_dir}) does "
                              "not support it; set training.gradient_checkpointing=false")
        # transformers 5.24 calls it activation_checkpointing_enable (gradient_checkpointing_enable warns
        # there and goes in v6); 5.17 has only gradient_checkpointing_enable. Both take the kwargs first.
        enable = (getattr(transformer, "activation_checkpointing_enable", None)
                  or transformer.gradient_checkpointing_enable)
        enable({"use_reentrant": False})
    return TaskModel(transformer, task, focal_gamma, class_alpha, inside_weight)
