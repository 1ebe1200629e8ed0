"""``python -m data_prep``: raw files -> validated, aligned, tokenized features (cached)."""

from __future__ import annotations

from data_prep.config import PrepConfig
from data_prep.pipeline import prepare_features, write_outputs
from data_prep.report import DataReport
from plumbing.cli import parse_config, run_cli, save_config

DESCRIPTION = """
Load ReDSM5 (data.name=redsm5 data.dir=DIR), SQuAD v2 (data.name=squad_v2 data.dir=DIR|FILE) or
the built-in synthetic demo corpus (default), validate and align it, split it by post, tokenize it
for the task with the model's tokenizer, cache the features as Parquet and print the data report.
Writes config.yaml, report.json and manifest.json (post ids per split) to out_dir.
"""


def main(argv: list[str]) -> None:
    cfg = parse_config(PrepConfig, argv, "data_prep", DESCRIPTION)
    fs = prepare_features(cfg)
    save_config(cfg, cfg.out_dir)
    write_outputs(fs, cfg.out_dir)
    print(DataReport.from_dict(fs.meta["report"]).format())
    for split, table in fs.features.items():
        print(f"  {split}: {table.num_rows} feature rows")
    print(f"features: {fs.meta['cache_path']}")


if __name__ == "__main__":
    run_cli(main)
