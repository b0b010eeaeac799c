#!/usr/bin/env python3
"""Compares one probe seed's per-layer scores with the encoder in bf16 or int8 against fp32.

Reads <exper>/<kind>_epoch_<e>/results_seed_<s>.csv (probe_evaluate's per-seed results) of two
experiments trained and scored alike except for --precision, at the last epoch both hold, prints
EM and F1 of every layer side by side and fails when any layer's F1 differs by more than --bound.
"""
import argparse
import csv
import glob
import os
import re
import sys


def last_epoch_results(exper, kind, seed):
    """(epoch, {layer: row}) of the highest epoch with a results file for this kind and seed."""
    found = {}
    for path in glob.glob(os.path.join(exper, f"{kind}_epoch_*", f"results_seed_{seed}.csv")):
        match = re.search(r"_epoch_(\d+)$", os.path.dirname(path))
        if match:
            found[int(match.group(1))] = path
    if not found:
        sys.exit(f"check_demo_precision: no {kind}_epoch_*/results_seed_{seed}.csv in '{exper}' (run probe_evaluate exper)")
    epoch = max(found)
    try:
        with open(found[epoch], newline="") as f:
            return epoch, {int(row["layer"]): row for row in csv.DictReader(f)}
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"check_demo_precision: cannot read '{found[epoch]}': {e!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("fp32_exper")
    parser.add_argument("other_exper", help="the same probes with the encoder in --precision")
    parser.add_argument("--precision", default="bf16", help="the other experiment's encoder precision (bf16, int8)")
    parser.add_argument("--kind", default="fine_tuned")
    parser.add_argument("--seed", default="1")
    parser.add_argument("--bound", type=float, default=1.0, help="largest allowed |F1 other - F1 fp32| per layer")
    args = parser.parse_args()
    fp32_epoch, fp32 = last_epoch_results(args.fp32_exper, args.kind, args.seed)
    p = args.precision
    other_epoch, other = last_epoch_results(args.other_exper, args.kind, args.seed)
    if fp32_epoch != other_epoch or sorted(fp32) != sorted(other):
        sys.exit(f"check_demo_precision: the runs differ in shape: fp32 epoch {fp32_epoch} layers {sorted(fp32)}, "
                 f"{p} epoch {other_epoch} layers {sorted(other)}")
    print(f"{args.kind} probes, seed {args.seed}, epoch {fp32_epoch}: fp32 encoder vs {p} encoder")
    print(f"{'layer':>5} {'EM fp32':>8} {'EM ' + p:>8} {'F1 fp32':>8} {'F1 ' + p:>8} {'F1 diff':>8}")
    worst = 0.0
    for layer in sorted(fp32):
        em = [float(r[layer]["exact"]) for r in (fp32, other)]
        f1 = [float(r[layer]["f1"]) for r in (fp32, other)]
        worst = max(worst, abs(f1[1] - f1[0]))
        print(f"{layer:>5} {em[0]:8.2f} {em[1]:8.2f} {f1[0]:8.2f} {f1[1]:8.2f} {f1[1] - f1[0]:+8.2f}")
    print(f"largest |F1 difference| {worst:.2f} (bound {args.bound})")
    if worst > args.bound:
        sys.exit(f"check_demo_precision: a layer's F1 moved by {worst:.2f} > {args.bound} with the encoder in {p}")


if __name__ == "__main__":
    main()
