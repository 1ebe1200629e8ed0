"""The model card (``README.md``) of a kept checkpoint: what Hugging Face users read before using a model.

Its YAML header carries ``model-index`` (validation and test metrics, the hub's machine-readable form),
the base model and, where known, its licence; the text says what the model does, what it was trained on,
the searched parameters and the limits of its use. Everything comes from the checkpoint itself (its
``meta.json`` with the validation scalars, its ``train_config.yaml``) plus the test metrics and, for a
sweep, the best trial's parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from data_prep.config import split_ratios
from plumbing import storage
from trainable.checkpoint import CONFIG_FILE, META_FILE, read_config
from trainable.hf_model import HF_TASKS

CARD_FILE = "README.md"
TASKS = {  # task -> (Hugging Face task type, what the model finds)
    "span": ("question-answering", "the evidence span of a symptom in a post (start/end logits, SQuAD v2 style)"),
    "span_crf": ("token-classification", "evidence spans of a symptom in a post (BIO tags decoded by a CRF)"),
    "pair": ("text-classification", "whether a sentence is evidence for a DSM-5 symptom criterion"),
}
DATASETS = {
    "redsm5": "ReDSM5: Reddit posts with sentence-level annotations of the nine DSM-5 depression symptoms",
    "squad_v2": "SQuAD 2.0 (extractive question answering with unanswerable questions; CC BY-SA 4.0)",
    "demo": "the project's synthetic demo corpus (generated posts; it says nothing about real posts)",
}
LICENCES = {"minilm": "apache-2.0"}  # built-in base models with known terms
RANDOM_BASES = ("tiny", "tiny-deberta")  # built by data_prep.tiny from random weights: nothing pretrained
LIMITS = ("A research aid for finding the sentences in a post that speak to a DSM-5 depression symptom. It is "
          "not a diagnosis, screening or triage tool: posts are not patients, annotations are not clinical "
          "assessments, and its errors (missed and invented evidence) are measured only on the split above.")


def card_metrics(scalars: dict[str, Any]) -> list[dict[str, Any]]:
    """model-index metric entries of a split's scalar metrics (counts and thresholds left out)."""
    skip = ("_n", "_skipped", "_total", "total", "_thresh", "loss", "checkpoint_epoch")
    return [{"type": k, "value": round(float(v), 4)} for k, v in sorted(scalars.items())
            if isinstance(v, int | float) and not k.endswith(skip)]


def model_card(checkpoint: str | Path, test: dict[str, Any] | None = None,
               params: dict[str, Any] | None = None, name: str = "") -> str:
    """The card's text for a local checkpoint directory."""
    import json

    meta = json.loads((Path(checkpoint) / META_FILE).read_text())
    cfg = read_config(checkpoint)
    task, data = meta["task"], cfg["data"]["name"]
    hf_task, finds = TASKS[task]
    split_note = f"{split_ratios(OmegaConf.create(cfg))}, seed {cfg['data']['split_seed']}"
    base = cfg["model"]["name"]
    results = [{"task": {"type": hf_task}, "dataset": {"name": data, "type": data, "split": split},
                "metrics": card_metrics(scalars)}
               for split, scalars in (("validation", meta.get("val") or {}), ("test", test or {})) if scalars]
    header = {"library_name": "transformers" if task in HF_TASKS else "pytorch", "pipeline_tag": hf_task,
              "base_model": base, **({"license": LICENCES[base]} if base in LICENCES else {}),
              "tags": ["redsm5-sweep", task, data],
              "model-index": [{"name": name or Path(checkpoint).name, "results": results}]}
    lines = [f"---\n{yaml.safe_dump(header, sort_keys=False)}---", f"# {name or 'Checkpoint'}: {task} on {data}",
             f"Finds {finds}. Base model: `{base}`"
             f"{base_note(base)}; trained on {DATASETS[data]}.",
             f"Kept at epoch {meta['epoch']} for its validation {meta['metric_name']} of {meta['metric']:.4f} "
             f"(train/validation/test split by post: {split_note}).",
             usage(task)]
    if params:
        lines.append("Searched parameters of this model:\n\n" + "\n".join(f"- `{k}`: {v}" for k, v in params.items()))
    lines.append(f"## Intended use and limits\n\n{LIMITS}")
    return "\n\n".join(lines) + "\n"


def base_note(base: str) -> str:
    if base in RANDOM_BASES:
        return " (built by this project from random weights: no pretraining, no licence of its own)"
    return "" if base in LICENCES else " (see its own card for its licence)"


def usage(task: str) -> str:
    own = "`python -m trainable.predict checkpoint=DIR input=posts.csv` (or `trainable.evaluate`)"
    if task == "span":
        return (f"Load it with {own}, or with transformers: `AutoModelForQuestionAnswering.from_pretrained(DIR)` "
                "and `AutoTokenizer.from_pretrained(DIR)` (question: the symptom's criterion; context: the post; "
                "the model gives start and end logits per token).")
    if task == "pair":
        return (f"Load it with {own}, or with transformers: `pipeline(\"text-classification\", model=DIR, top_k=None)` "
                "on `{\"text\": criterion, \"text_pair\": sentence}` (the `evidence` label's score is the probability "
                "that the sentence is evidence for the criterion; `meta.json` holds the threshold chosen on "
                "validation as `evidence_threshold`), or `AutoModelForSequenceClassification.from_pretrained(DIR)`.")
    return f"Load it with {own}; it has no standard transformers head (its own `model.pt`)."


def write_model_card(checkpoint: str, test: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
                     name: str = "") -> str:
    """README.md in the checkpoint directory (a path or a URI; the card is built from a local copy's files)."""
    import tempfile

    path = storage.join(checkpoint, CARD_FILE)
    if not storage.is_uri(checkpoint):
        storage.write_text(path, model_card(checkpoint, test, params, name))
        return path
    with tempfile.TemporaryDirectory(prefix="card-") as tmp:
        for f in (META_FILE, CONFIG_FILE):
            storage.write_bytes(str(Path(tmp) / f), storage.read_bytes(storage.join(checkpoint, f)))
        storage.write_text(path, model_card(tmp, test, params, name))
    return path
