"""Accuracy of the builtin spam engine against its targets, on each shared corpus.

    .venv/bin/python bench/spam_accuracy.py                     # both corpora, 5 folds
    .venv/bin/python bench/spam_accuracy.py --sets modern --json

For each set (the SpamAssassin public corpus; modern-ham with modern-spam) it runs the same
cross validation as `mailcloak spam eval` (near-identical messages kept within one fold, the
model and its calibration learned on the training folds only) and checks the targets: at
least 97% of spam blocked (quarantined or rejected) while at most 0.5% of ham is, and a median
scan time under 5 ms. The exit status is 0 when every set meets them. The side-by-side
comparison with Rspamd and SpamAssassin is bench/spam_compare.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.spam import corpus, evaluate
from mailcloak.mail.spam.engine import base_thresholds

ROOT = Path(__file__).resolve().parent.parent
SETS = {
    "spamassassin": (["spamassassin/ham"], ["spamassassin/spam"]),
    "modern": (["modern-ham"], ["modern-spam"]),
}
TARGET_RECALL = 0.97
TARGET_FP = 0.005
TARGET_MEDIAN_MS = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: "
                        + ", ".join(SETS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one JSON object per set")
    args = parser.parse_args()
    thresholds = base_thresholds(mailcloak_settings.get())
    all_met = True
    for name in args.sets.split(","):
        ham_dirs, spam_dirs = SETS[name.strip()]
        messages = corpus.read([args.corpus / d for d in ham_dirs],
                               [args.corpus / d for d in spam_dirs])
        started = time.monotonic()
        report = evaluate.cross_validate(messages, thresholds, folds=args.folds)
        met = (report.spam_recall >= TARGET_RECALL and report.ham_fp_rate <= TARGET_FP
               and report.median_ms < TARGET_MEDIAN_MS)
        all_met &= met
        print(f"== {name}: {'targets met' if met else 'TARGETS NOT MET'} "
              f"({time.monotonic() - started:.0f} s)")
        print(report.text())
        if args.json:
            print(json.dumps({"set": name, "targets_met": met, **report.summary()},
                             sort_keys=True))
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
