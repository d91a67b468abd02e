"""``reviews-mtl train | evaluate | predict``: the model's commands (``predict`` runs :mod:`reviews_mtl.model`).

Registration imports nothing heavy; torch, transformers and onnxruntime load inside the handlers.
Every option also reads an environment variable (named in its help), through the settings classes of
:mod:`reviews_mtl.settings` (``TrainSettings``, ``EvalSettings``, ``DataSettings``); a flag wins over it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, get_args

from reviews_mtl.settings import DataSettings, EvalSettings, ModelToolSettings, RuntimeKind, TrainSettings


def register(subparsers: Any) -> None:
    training, evaluation, data_dir = TrainSettings(), EvalSettings(), DataSettings().dir
    tools = ModelToolSettings()
    train = subparsers.add_parser("train", help="train the multi-task model and write an artifact directory")
    train.add_argument(
        "--preset",
        choices=("demo", "full"),
        default=training.preset,
        help="training preset (env REVIEWS_TRAIN_PRESET; default demo)",
    )
    train.add_argument(
        "--data",
        type=Path,
        default=data_dir,
        help="review data folder (env REVIEWS_DATA_DIR; default ../shared/data, else the sample)",
    )
    train.add_argument("--sample", action="store_true", help="train on the project's own sample only")
    train.add_argument(
        "--output",
        type=Path,
        default=training.output,
        help="artifact directory to write (env REVIEWS_MODEL_OUTPUT; default artifacts/<preset>)",
    )
    train.add_argument(
        "--encoder",
        default=training.encoder,
        help="minilm-l6 (default) or any Hugging Face encoder name or path (env REVIEWS_ENCODER)",
    )
    train.add_argument(
        "--epochs",
        type=int,
        default=training.epochs,
        help="maximum epochs (env REVIEWS_TRAIN_EPOCHS)",
    )
    train.add_argument(
        "--batch-size",
        type=int,
        default=training.batch_size,
        help="batch size (env REVIEWS_TRAIN_BATCH_SIZE)",
    )
    train.add_argument(
        "--max-length",
        type=int,
        default=training.max_length,
        help="maximum tokens (env REVIEWS_MAX_LENGTH)",
    )
    train.add_argument(
        "--steps-per-epoch",
        type=int,
        default=training.steps_per_epoch,
        help="optimizer steps per epoch, 0 = a pass over the reviews (env REVIEWS_TRAIN_STEPS_PER_EPOCH)",
    )
    train.add_argument(
        "--max-train-reviews",
        type=int,
        default=training.max_reviews,
        help="cap on training reviews, 0 = all (env REVIEWS_TRAIN_MAX_REVIEWS)",
    )
    train.add_argument(
        "--time-budget",
        type=float,
        default=training.time_budget,
        help="seconds after which training stops at the end of an epoch (env REVIEWS_TRAIN_TIME_BUDGET)",
    )
    train.add_argument("--no-weak-labels", action="store_true", help="train aspects on human labels only")
    train.add_argument("--aspect-share", type=float, default=None, help="share of aspect rows in each batch")
    train.add_argument(
        "--threads",
        type=int,
        default=training.threads,
        help="torch CPU threads (env REVIEWS_TORCH_THREADS; default one per core)",
    )
    train.add_argument("--seed", type=int, default=training.seed, help="random seed (env REVIEWS_SEED)")
    train.add_argument("--rating-head", choices=("regression", "stars", "ordinal"), default=training.rating_head,
                       help="rating head: 1+4·sigmoid regression, 5-way stars, or ordinal "
                       "(env REVIEWS_TRAIN_RATING_HEAD; default stars)")
    train.add_argument("--truncation", choices=("head", "head_tail"), default=training.truncation,
                       help="cut long reviews to their first tokens, or first and last (env REVIEWS_TRAIN_TRUNCATION)")
    train.add_argument("--freeze-layers", type=int, default=training.freeze_layers,
                       help="freeze the embeddings and this many lowest layers (env REVIEWS_TRAIN_FREEZE_LAYERS)")
    train.add_argument("--cache-activations", action=argparse.BooleanOptionalAction, default=training.cache_activations,
                       help="compute the frozen layers once and train the rest from their activations "
                       "(env REVIEWS_TRAIN_CACHE_ACTIVATIONS; preset's default)")
    train.add_argument("--cache-dir", type=Path, default=training.cache_dir,
                       help="keep cached activations here and reuse them (env REVIEWS_TRAIN_CACHE_DIR; default memory)")
    train.add_argument("--linear-probe-steps", type=int, default=training.linear_probe_steps,
                       help="LP-FT: head-only steps before fine-tuning (env REVIEWS_TRAIN_LINEAR_PROBE_STEPS)")
    train.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=training.calibrate,
                       help="tune the sentiment source and band and the star bias on validation "
                       "(env REVIEWS_TRAIN_CALIBRATE; default on)")
    train.add_argument("--aspect-pos-weight", type=float, default=training.aspect_pos_weight,
                       help="positive aspect cells weigh (neg/pos)**this, 0 = off "
                       "(env REVIEWS_TRAIN_ASPECT_POS_WEIGHT)")
    train.add_argument("--soft-labels", type=Path, default=training.soft_labels,
                       help="a teacher's soft labels (reviews-mtl distill) to distil from "
                       "(env REVIEWS_TRAIN_SOFT_LABELS)")
    train.add_argument("--distill-weight", type=float, default=training.distill_weight,
                       help="share of the teacher's loss, 0..1 (env REVIEWS_TRAIN_DISTILL_WEIGHT; default 0.5)")
    train.set_defaults(func=_train)

    distill = subparsers.add_parser("distill", help="write a teacher artifact's soft labels for the training pool")
    distill.add_argument("--teacher", type=Path, default=tools.distill_teacher, required=tools.distill_teacher is None,
                         help="teacher artifact directory (env REVIEWS_DISTILL_TEACHER)")
    distill.add_argument("--output", type=Path, default=tools.distill_output, required=tools.distill_output is None,
                         help="soft labels file, .npz (env REVIEWS_DISTILL_OUTPUT)")
    distill.add_argument("--data", type=Path, default=data_dir, help="review data folder (env REVIEWS_DATA_DIR)")
    distill.add_argument("--sample", action="store_true", help="the project's own sample data")
    distill.add_argument("--runtime", default=evaluation.runtime or "auto", choices=get_args(RuntimeKind),
                         help="teacher runtime (env REVIEWS_RUNTIME; auto: torch on a GPU)")
    distill.set_defaults(func=_distill)

    quantize = subparsers.add_parser(
        "quantize", help="re-run the int8 export rule on an artifact: each candidate's validation metrics and speed"
    )
    quantize.add_argument("--model", type=Path, default=evaluation.model_dir, required=evaluation.model_dir is None,
                          help="artifact directory (env REVIEWS_MODEL_DIR)")
    quantize.add_argument("--data", type=Path, default=data_dir, help="review data folder (env REVIEWS_DATA_DIR)")
    quantize.add_argument("--sample", action="store_true", help="the project's own sample data")
    quantize.add_argument("--all", action="store_true", default=tools.quantize_all,
                          help="score every candidate, and the per-tensor and static graphs for comparison "
                          "(env REVIEWS_QUANTIZE_ALL)")
    quantize.add_argument("--reexport", action="store_true",
                          help="first rebuild the fp32 ONNX graph from the weights (artifacts trained before the "
                               "graph grouped the star distribution correctly) and record its parity with torch")
    quantize.set_defaults(func=_quantize)

    evaluate = subparsers.add_parser("evaluate", help="evaluate an artifact against the TF-IDF baseline, HTML report")
    evaluate.add_argument(
        "--model",
        type=Path,
        default=evaluation.model_dir,
        required=evaluation.model_dir is None,
        help="artifact directory (env REVIEWS_MODEL_DIR)",
    )
    evaluate.add_argument(
        "--data",
        type=Path,
        default=data_dir,
        help="review data folder (env REVIEWS_DATA_DIR; default as for train)",
    )
    evaluate.add_argument("--sample", action="store_true", help="evaluate on the project's own sample data")
    evaluate.add_argument(
        "--max-reviews",
        type=int,
        default=evaluation.max_reviews,
        help="cap on test reviews, 0 = all (env REVIEWS_EVAL_MAX_REVIEWS)",
    )
    evaluate.add_argument("--output", type=Path, default=None, help="report folder (default <model>/report)")
    evaluate.add_argument("--split", choices=("test", "validation"), default=evaluation.split,
                          help="the split to score (env REVIEWS_EVAL_SPLIT; default test)")
    evaluate.add_argument(
        "--runtime",
        default=evaluation.runtime or "onnx-int8",
        choices=get_args(RuntimeKind),
        help="runtime (env REVIEWS_RUNTIME)",
    )
    evaluate.set_defaults(func=_evaluate)

    predict = subparsers.add_parser("predict", help="predict a JSONL or CSV file of reviews into JSONL")
    predict.add_argument(
        "--model",
        type=Path,
        default=evaluation.model_dir,
        required=evaluation.model_dir is None,
        help="artifact directory (env REVIEWS_MODEL_DIR)",
    )
    predict.add_argument("--input", type=Path, required=True, help="JSONL or CSV with review_id and text")
    predict.add_argument("--output", type=Path, required=True, help="output JSONL")
    predict.add_argument(
        "--runtime",
        default=evaluation.runtime or "auto",
        choices=get_args(RuntimeKind),
        help="runtime (env REVIEWS_RUNTIME)",
    )
    predict.add_argument(
        "--threads",
        type=int,
        default=evaluation.intra_op_threads,
        help="ONNX Runtime intra-op threads, 0 = one per core (env REVIEWS_INTRA_OP_THREADS)",
    )
    predict.set_defaults(func=_predict)


def _train(args: argparse.Namespace) -> int:
    from reviews_mtl.data.paths import resolve_data_dir
    from reviews_mtl.training.train import train_preset

    data_dir = None if args.sample else resolve_data_dir(args.data)
    output = args.output or Path("artifacts") / args.preset
    metrics = train_preset(
        args.preset,
        data_dir=data_dir,
        output_dir=output,
        encoder=args.encoder,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        steps_per_epoch=args.steps_per_epoch,
        max_train_reviews=args.max_train_reviews,
        time_budget_s=args.time_budget,
        weak_labels=False if args.no_weak_labels else None,
        aspect_share=args.aspect_share,
        threads=args.threads,
        seed=args.seed,
        rating_head=args.rating_head,
        truncation=args.truncation,
        freeze_layers=args.freeze_layers,
        cache_activations=args.cache_activations,
        cache_dir=str(args.cache_dir) if args.cache_dir else None,
        linear_probe_steps=args.linear_probe_steps,
        calibrate=args.calibrate,
        aspect_pos_weight=args.aspect_pos_weight,
        soft_labels=str(args.soft_labels) if args.soft_labels else None,
        distill_weight=args.distill_weight,
    )
    from reviews_mtl.training.report import summary_rows

    print(f"artifact: {output}  ({metrics['train_seconds']} s training, {metrics['total_seconds']} s total)")
    print(f"{'test split':<40} {'model':>8} {'tfidf':>8}")
    for name, model_value, base_value in summary_rows(metrics["test"], metrics["baseline"].get("test")):
        print(f"{name:<40} {model_value:>8} {base_value:>8}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from reviews_mtl.data.paths import resolve_data_dir
    from reviews_mtl.training.evaluate import evaluate_artifact

    data_dir = None if args.sample else resolve_data_dir(args.data)
    report = evaluate_artifact(
        args.model, data_dir, args.output, runtime=args.runtime, max_reviews=args.max_reviews, split=args.split
    )
    chi = report["statistics"].get("chi_square_rating_vs_predicted_sentiment")
    if chi:
        chi.pop("table", None)
    print(json.dumps(report, indent=2))
    return 0


def _distill(args: argparse.Namespace) -> int:
    from reviews_mtl.data.paths import resolve_data_dir
    from reviews_mtl.training.distill import write_soft_labels

    data_dir = None if args.sample else resolve_data_dir(args.data)
    print(json.dumps(write_soft_labels(args.teacher, data_dir, args.output, runtime=args.runtime)))
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from reviews_mtl.data.paths import resolve_data_dir
    from reviews_mtl.training.quantize_report import quantize_artifact

    data_dir = None if args.sample else resolve_data_dir(args.data)
    result = quantize_artifact(args.model, data_dir, try_all=args.all, reexport=args.reexport)
    print(f"{'graph':<36} {'sent F1':>8} {'MAE':>7} {'asp F1':>7} {'rows/s':>8} {'×fp32':>6}  rule  batch-invariant")
    for row in result["table"]:
        print(f"{row['name']:<36} {row['sentiment_macro_f1']:>8.4f} {row['rating_mae']:>7.4f} "
              f"{row['aspect_macro_f1']:>7.4f} {row['rows_per_s']:>8.1f} {row['speedup_vs_fp32']:>6.2f}  "
              f"{row['rule']:<5} {row['batch_invariant']}")
    print(f"chosen: {result['chosen']} (written to {args.model}/model.int8.onnx)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from reviews_mtl.model.artifact import ArtifactError
    from reviews_mtl.model.predict import predict_file
    from reviews_mtl.model.runtime import load_predictor

    if not args.input.is_file():
        print(f"input file not found: {args.input}", file=sys.stderr)
        return 2
    try:
        predictor = load_predictor(args.model, runtime=args.runtime, intra_op_threads=args.threads)
    except ArtifactError as exc:
        print(f"cannot load model: {exc}", file=sys.stderr)
        return 2
    summary = predict_file(predictor, args.input, args.output)
    print(json.dumps({"rows": summary.rows, "predicted": summary.predicted, "errors": summary.errors}))
    return 0
