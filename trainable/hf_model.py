"""A checkpoint as a standard Hugging Face model directory, beside the checkpoint's own files.

``transformers`` users load models with ``from_pretrained`` and ``pipeline()``, not with this project's
``model.pt``. Two tasks have a standard class of their encoder family (BERT, DeBERTa-v2, RoBERTa, ELECTRA):

- ``pair`` *is* the family's ``...ForSequenceClassification`` (``trainable.models``), labels
  ``not_evidence``/``evidence``: ``pipeline("text-classification", model=DIR)`` scores a
  ``{"text": criterion, "text_pair": sentence}`` as ``trainable.predict`` does (``evidence``'s score is its
  probability; the checkpoint's ``meta.json`` holds the threshold it chose on validation).
- ``span`` is an ``...ForQuestionAnswering``: the encoder's weights under the family's prefix and a 2-output
  ``qa_outputs`` layer, the first two rows (start, end) of the span head; its third row, the
  inside-the-answer logit, is only a training signal (``losses.inside_bce``) and no prediction reads it.
  ``AutoModelForQuestionAnswering.from_pretrained(DIR)`` gives the checkpoint's start and end logits
  (transformers 5 removed ``pipeline("question-answering")``, so decoding them into a span is the
  caller's, or ``trainable.predict``'s, job).

``config.json`` stays what ``load_model`` reads (the encoder's config, ``architectures`` added);
``model.safetensors`` holds the weights a second time, in the format ``from_pretrained`` reads.
``span_crf`` decodes with a CRF, which no standard class has: it keeps its own format only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForQuestionAnswering

from trainable.checkpoint import load_model
from trainable.models import TaskModel

HF_TASKS = {  # task -> the auto class that loads its model directory
    "span": "AutoModelForQuestionAnswering",
    "pair": "AutoModelForSequenceClassification",
}
HF_WEIGHTS = "model.safetensors"


def question_answering_model(model: TaskModel) -> torch.nn.Module:
    """A span model's encoder and the start/end rows of its head as the family's QA model."""
    qa = AutoModelForQuestionAnswering.from_config(model.encoder.config)
    qa.base_model.load_state_dict(model.encoder.state_dict())  # strict: same encoder class, no pooler
    with torch.no_grad():
        qa.qa_outputs.weight.copy_(model.head.weight[:2])
        qa.qa_outputs.bias.copy_(model.head.bias[:2])
    return qa.eval()


def hf_model(checkpoint: str | Path) -> torch.nn.Module:
    """The checkpoint's model as its family's standard transformers class (``HF_TASKS``)."""
    model, meta, _ = load_model(checkpoint)
    if meta["task"] == "pair":
        return model.classifier
    if meta["task"] == "span":
        return question_answering_model(model)
    raise ValueError(f"{checkpoint}: a '{meta['task']}' checkpoint has no standard transformers class")


def write_hf_model(checkpoint: str | Path) -> bool:
    """Add the Hugging Face model files to a local checkpoint directory of a task that has a standard
    class (``HF_TASKS``); False (nothing written) for the others."""
    from trainable.checkpoint import read_meta

    if read_meta(checkpoint)["task"] not in HF_TASKS:
        return False
    hf_model(checkpoint).save_pretrained(checkpoint)
    return True
