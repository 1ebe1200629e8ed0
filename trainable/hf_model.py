"""A ``span`` checkpoint as a standard Hugging Face model directory, beside the checkpoint's own files.

``transformers`` users load models with ``from_pretrained`` and ``pipeline()``, not with this project's
``model.pt``. For ``span`` the checkpoint is also an ``<Family>ForQuestionAnswering`` (BERT, DeBERTa-v2,
RoBERTa, ELECTRA, ...): the encoder's weights under the family's prefix and a 2-output ``qa_outputs``
layer, the first two rows (start, end) of the span head; its third row, the inside-the-answer logit,
is only a training signal (``losses.inside_bce``) and no prediction reads it. So

    AutoModelForQuestionAnswering.from_pretrained("runs/sweep/best_checkpoint")

loads it offline (with ``AutoTokenizer`` from the same directory) and gives the start and end logits the
checkpoint gives. (transformers 5 removed ``pipeline("question-answering")``; its migration guide points
to chat models, so decoding the logits into a span is the caller's, or ``trainable.predict``'s, job.)
``config.json`` stays the encoder's config (``load_model`` reads it) with ``architectures`` added;
``model.safetensors`` holds the weights a second time, in the format ``from_pretrained`` reads.

``pair`` reads the raw [CLS] state, where BERT's ``...ForSequenceClassification`` reads its pooler (a dense
layer and tanh), and ``span_crf`` decodes with a CRF: no standard class computes what they do, so they keep
their own format only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForQuestionAnswering

from trainable.checkpoint import load_model

HF_TASKS = {"span": "AutoModelForQuestionAnswering"}  # task -> the auto class that loads its model directory
HF_WEIGHTS = "model.safetensors"


def question_answering_model(checkpoint: str | Path) -> torch.nn.Module:
    """The checkpoint's encoder and the start/end rows of its span head as the family's QA model."""
    model, meta, _ = load_model(checkpoint)
    if meta["task"] != "span":
        raise ValueError(f"{checkpoint}: a '{meta['task']}' checkpoint has no question-answering head")
    qa = AutoModelForQuestionAnswering.from_config(model.encoder.config)
    qa.base_model.load_state_dict(model.encoder.state_dict())  # strict: same encoder class, no pooler
    with torch.no_grad():
        qa.qa_outputs.weight.copy_(model.head.weight[:2])
        qa.qa_outputs.bias.copy_(model.head.bias[:2])
    return qa.eval()


def write_hf_model(checkpoint: str | Path) -> bool:
    """Add the Hugging Face model files to a local checkpoint directory of a task that has a standard
    head (``HF_TASKS``); False (nothing written) for the others."""
    from trainable.checkpoint import read_meta

    if read_meta(checkpoint)["task"] not in HF_TASKS:
        return False
    question_answering_model(checkpoint).save_pretrained(checkpoint)
    return True
