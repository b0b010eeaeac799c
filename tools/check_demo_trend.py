#!/usr/bin/env python3
"""Checks the demo's headline result in an experiment's summary.csv.

The fine-tuned model's probes must answer far better at the top layer than at
layer 1, and better than the pretrained model's top layer. Both are checked on
the overall F1 and on the answerable questions' F1 (HasAns): with about half
the questions unanswerable, an always-"" probe scores about 50 overall F1, so
a rise in overall F1 alone could come from no-answer guessing.
Each kind is judged at its last trained epoch.
"""
import argparse
import csv
import sys


def last_epoch_layers(path):
    """{kind: {layer: row}} for each kind's highest epoch in summary.csv."""
    runs = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                runs.setdefault(row["kind"], {}).setdefault(int(row["epoch"]), {})[int(row["layer"])] = row
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"check_demo_trend: cannot read '{path}' as probe_evaluate's summary.csv: {e!r}")
    return {kind: epochs[max(epochs)] for kind, epochs in runs.items()}


def metric(row, column, path):
    try:
        return float(row[column])
    except (KeyError, ValueError):
        sys.exit(f"check_demo_trend: '{path}' has no numeric {column} for {row['kind']} layer {row['layer']}")


def print_table(pre, fine, path):
    """Both models' last-epoch probes side by side, one row per layer."""
    print(f"{'layer':>5}  {'pretrained EM':>13} {'F1':>6} {'HasAns F1':>9}  {'fine_tuned EM':>13} {'F1':>6} {'HasAns F1':>9}")
    for layer in sorted(set(pre) | set(fine)):
        cells = []
        for rows in (pre, fine):
            row = rows.get(layer)
            cells.append(f"{metric(row, 'exact', path):13.2f} {metric(row, 'f1', path):6.2f} "
                         f"{metric(row, 'f1_has_ans', path):9.2f}" if row else f"{'-':>13} {'-':>6} {'-':>9}")
        print(f"{layer:>5}  {cells[0]}  {cells[1]}")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summary", help="probe_evaluate's EXP/summary.csv")
    parser.add_argument("--min-rise", type=float, default=20.0,
                        help="least fine_tuned F1 gain, top layer over layer 1, overall and HasAns (default: %(default)s)")
    parser.add_argument("--min-lead", type=float, default=5.0,
                        help="least fine_tuned top-layer F1 lead over the pretrained top layer, overall and HasAns "
                             "(default: %(default)s)")
    args = parser.parse_args()

    runs = last_epoch_layers(args.summary)
    missing = {"pretrained", "fine_tuned"} - runs.keys()
    if missing:
        sys.exit(f"check_demo_trend: '{args.summary}' has no {' or '.join(sorted(missing))} results; "
                 "run probe_train both, probe_predict exper and probe_evaluate exper first")
    fine, pre = runs["fine_tuned"], runs["pretrained"]
    print_table(pre, fine, args.summary)
    failures = []
    for column, label in (("f1", "F1"), ("f1_has_ans", "HasAns F1")):
        first = metric(fine[min(fine)], column, args.summary)
        top = metric(fine[max(fine)], column, args.summary)
        pre_top = metric(pre[max(pre)], column, args.summary)
        print(f"{label}: fine_tuned layer 1 {first:.2f}, layer {max(fine)} {top:.2f} (rise {top - first:+.2f}, "
              f"need >= {args.min_rise}); pretrained layer {max(pre)} {pre_top:.2f} "
              f"(lead {top - pre_top:+.2f}, need >= {args.min_lead})")
        if top - first < args.min_rise:
            failures.append(f"fine_tuned {label} rises only {top - first:.2f} from layer 1 to layer {max(fine)}")
        if top - pre_top < args.min_lead:
            failures.append(f"fine_tuned top-layer {label} leads the pretrained top layer by only {top - pre_top:.2f}")
    if failures:
        sys.exit("check_demo_trend: the demo did not show the study's trend:\n  " + "\n  ".join(failures) +
                 "\n(the fine-tuned model may be undertrained: see run_squad's dev results in the demo log)")
    print("check_demo_trend: OK, the fine-tuned model's upper layers answer far better than its lower layers")


if __name__ == "__main__":
    main()
