#!/usr/bin/env python3
"""Turns divan's table (`cargo bench -p passport-webhook --bench mutate`) into JSON.

Reads divan's output on stdin and writes bench/results/mutate.json: for every benchmark and
argument, the fastest, slowest, median and mean time in nanoseconds, the samples and the
iterations, with the command that produced them. Standard library only.
"""

import json
import re
import sys

UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
TIME = re.compile(r"^\s*([0-9.]+)\s*(ps|ns|µs|us|ms|s)\s*$")


def nanos(cell):
    match = TIME.match(cell)
    if not match:
        return None
    return round(float(match.group(1)) * UNITS[match.group(2)], 3)


def parse(lines):
    """Rows of divan's tree: a group line (`├─ mutate  │ │ ...`), then one line per argument
    (`│  ├─ 10  6.8 µs │ 20 µs │ 7.2 µs │ 7.5 µs │ 100 │ 800`)."""
    results = []
    group = None
    for line in lines:
        label = re.match(r"^([\s│├╰─]*)(\S+)(.*)$", line)
        if label is None or "│" not in label.group(3):
            continue
        key = label.group(2)
        cells = [c.strip() for c in label.group(3).split("│")]
        if key == "fastest" or not cells:
            continue
        if not cells[0]:
            group = key
            continue
        if not key.isdigit() or len(cells) < 6:
            continue
        times = [nanos(c) for c in cells[:4]]
        if None in times:
            continue
        results.append(
            {
                "benchmark": group,
                "containers": int(key),
                "fastestNs": times[0],
                "slowestNs": times[1],
                "medianNs": times[2],
                "meanNs": times[3],
                "samples": int(cells[4]),
                "iterations": int(cells[5]),
            }
        )
    return results


def main():
    text = sys.stdin.read()
    sys.stdout.write(text)
    results = parse(text.splitlines())
    if not results:
        sys.exit("divan_json.py: no benchmark rows in the input")
    out = {
        "benchmark": "mutate",
        "command": "make bench (cargo bench -p passport-webhook --bench mutate)",
        "what": "time per pod of passport_webhook::mutate, the review's parse excluded; "
        "mutate_and_patch adds the JSON patch; review_with_parse is the whole review from the "
        "request's bytes",
        "runs": results,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
