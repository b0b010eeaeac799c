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
                if row.get("probe", "linear") != "linear":  # a --probe sweep: the study's probe only
                    continue
                runs.setdefault(row["kind"], {}).setdefault(int(row["epoch"]), {})[int(row["layer"])] = row
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"check_demo_trend: cannot read '{path}' as probe_evaluate's summary.csv: {e!r}")
    return {kind: epochs[max(epochs)] for kind, epochs in runs.items()}


def metric(row, column, path):
    try:
        return float(row[column])
    except (KeyError, ValueError):
        sys.exit(f"check_demo_trend: '{path}' has no numeric {column} for {row['kind']} layer {row['layer']}")


def mean_sd(row, column, path):
    """'mean +- sd' of a summary.csv metric; just the mean when one seed gave no spread."""
    value = metric(row, column, path)
    spread = row.get(column + "_std", "")
    return f"{value:6.2f} ± {float(spread):4.2f}" if spread else f"{value:6.2f}       "


def gap(row, reference, path):
    """This kind's F1 minus the reference kind's at the same layer, with its 95% interval."""
    value = row.get(f"f1_minus_{reference}", "") if row else ""
    if not value:
        return f"{'-':>22}"
    low, high = row.get(f"f1_minus_{reference}_ci_low", ""), row.get(f"f1_minus_{reference}_ci_high", "")
    interval = f" [{float(low):+6.2f},{float(high):+6.2f}]" if low and high else ""
    return f"{float(value):+6.2f}{interval:>16}"


def estimate(row, column):
    """A summary.csv estimate with its 95% interval, or '-'."""
    value = row.get(column, "") if row else ""
    if not value:
        return f"{'-':>22}"
    low, high = row.get(column + "_ci_low", ""), row.get(column + "_ci_high", "")
    interval = f" [{float(low):+6.2f},{float(high):+6.2f}]" if low and high else ""
    return f"{float(value):+6.2f}{interval:>16}"


def print_selectivity(runs):
    """With --control-task: each kind's control-task F1 and selectivity (F1 - control-task F1) per layer."""
    kinds = [k for k in ("pretrained", "fine_tuned", "control") if k in runs]
    if not any(row.get("selectivity") for k in kinds for row in runs[k].values()):
        return
    print("Selectivity (Hewitt & Liang): F1 on SQuAD minus F1 on the control task, 95% paired bootstrap interval")
    header = f"{'layer':>5}"
    for kind in kinds:
        header += f"  {kind + ' ctl-task F1':>21} {kind + ' selectivity':>22}"
    print(header)
    for layer in sorted(set().union(*(runs[k].keys() for k in kinds))):
        line = f"{layer:>5}"
        for kind in kinds:
            row = runs[kind].get(layer)
            control_f1 = row.get("control_task_f1", "") if row else ""
            line += f"  {float(control_f1) if control_f1 else float('nan'):>21.2f} {estimate(row, 'selectivity')}"
        print(line)
    print()


def print_table(runs, path):
    """Every kind's last-epoch probes side by side, one row per layer: F1 mean +- SD over seeds, HasAns F1,
    and each model's gap to the control (with its bootstrap interval) when the control was probed."""
    kinds = [k for k in ("pretrained", "fine_tuned", "control") if k in runs]
    control = "control" in runs
    header = f"{'layer':>5}"
    for kind in kinds:
        header += f"  {kind + ' F1':>15} {'HasAns':>6}"
    if control:
        header += "".join(f"  {kind + ' - control':>22}" for kind in kinds if kind != "control")
    print(header)
    for layer in sorted(set().union(*(runs[k].keys() for k in kinds))):
        line = f"{layer:>5}"
        for kind in kinds:
            row = runs[kind].get(layer)
            line += (f"  {mean_sd(row, 'f1', path):>15} {metric(row, 'f1_has_ans', path):6.2f}" if row
                     else f"  {'-':>15} {'-':>6}")
        if control:
            line += "".join(f"  {gap(runs[kind].get(layer), 'control', path)}" for kind in kinds if kind != "control")
        print(line)
    print()


def head_lens(experiments, run_squad_results):
    """The head lens of each experiment (probe_evaluate's head_lens_results.csv) per layer; its last layer must
    score run_squad's own dev F1 (the model's answers) to 1e-9."""
    tables = []
    for exper in experiments:
        path = f"{exper}/head_lens_results.csv"
        try:
            with open(path, newline="") as f:
                tables.append({int(row["layer"]): row for row in csv.DictReader(f)})
        except (OSError, KeyError, ValueError) as e:
            sys.exit(f"check_demo_trend: cannot read '{path}': {e!r}")
    print("Head lens: the model's own QA head on each layer's hidden state (F1 / HasAns F1)")
    print(f"{'layer':>5}" + "".join(f"  {exper.rstrip('/').split('/')[-1]:>24}" for exper in experiments))
    for layer in sorted(set().union(*tables)):
        line = f"{layer:>5}"
        for table in tables:
            row = table.get(layer)
            line += f"  {float(row['f1']):12.2f} / {float(row['f1_has_ans']):7.2f}" if row else f"  {'-':>24}"
        print(line)
    if run_squad_results:
        import json
        with open(run_squad_results) as f:
            expected = json.load(f)["f1"]
        last = tables[-1][max(tables[-1])]
        print(f"last layer of {experiments[-1]}: F1 {float(last['f1']):.6f}; run_squad's dev F1 {expected:.6f}")
        if abs(float(last["f1"]) - expected) > 1e-9:
            sys.exit("check_demo_trend: the head lens's last layer is not the model's own answers")
        print("check_demo_trend: OK, the head lens's last layer is run_squad's evaluation exactly")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--head-lens":
        parser = argparse.ArgumentParser(description="Print the head lens of experiments (and check its last layer)")
        parser.add_argument("--head-lens", nargs="+", required=True, metavar="EXPER")
        parser.add_argument("--run-squad-results", help="run_squad's eval_results.json of the last experiment's model")
        args = parser.parse_args()
        head_lens(args.head_lens, args.run_squad_results)
        return
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
    print_table(runs, args.summary)
    print_selectivity(runs)
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
