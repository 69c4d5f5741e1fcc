#!/usr/bin/env python3
"""Choose the tracked seed set of each fuzz target from a grown corpus, without coverage.

    python3 fuzz/seeds.py [--max 300] [--corpus fuzz/corpus] [--seeds fuzz/seeds]

For each target directory under --corpus (and the seeds already there), writes at most --max
files to --seeds/TARGET (the directory is replaced), by a deterministic rule:

  1. every distinct leading token gets its smallest input (ties: the lower file name). The
     leading token of `verify_request` is its first byte modulo the number of built-in
     profiles (the profile the input exercises) with the kind of its second byte; of
     `json_pointer` the pointer's first segment; of the text targets the first word or
     punctuation mark of the first non-blank line;
  2. then, while room is left, the input that adds the most byte pairs (bigrams) no chosen
     input has yet (ties: the smaller, then the lower file name), until none adds any.

Inputs are identical when their bytes are: a file is named by the SHA-1 of its content, as
libFuzzer names them, so a seed set only changes when its inputs do.

`cargo fuzz cmin` (coverage-guided, needs cargo-fuzz and a nightly or RUSTC_BOOTSTRAP) picks
better seeds when it is at hand: `bash fuzz/run.sh cmin` does that instead.
"""

import argparse
import hashlib
import heapq
import os
import re
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def builtin_profiles():
    return max(1, len([n for n in os.listdir(os.path.join(HERE, "..", "providers")) if n.endswith(".yaml")]))


def leading_token(target, data, nprofiles):
    if target == "verify_request":
        if len(data) < 2:
            return "short"
        kind = "ascii" if 0x20 <= data[1] < 0x7F else "other"
        return f"profile {data[0] % nprofiles} {kind}"
    text = data.decode("utf-8", "replace")
    if target == "json_pointer":
        ptr = text.split("\n", 1)[0]
        return "ptr " + (ptr.split("/")[1][:16] if ptr.count("/") else ptr[:1])
    for line in text.splitlines():
        if line.strip():
            m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*|\S)", line)
            return m.group(1)[:24]
    return "blank"


def bigrams(data):
    return {data[i:i + 2] for i in range(len(data) - 1)} or {data}


def choose(target, inputs, most, nprofiles):
    """inputs: {sha1: bytes} -> sorted list of chosen sha1 names."""
    order = sorted(inputs, key=lambda k: (len(inputs[k]), k))
    chosen, seen_tokens = [], set()
    for k in order:
        tok = leading_token(target, inputs[k], nprofiles)
        if tok not in seen_tokens and len(chosen) < most:
            seen_tokens.add(tok)
            chosen.append(k)
    covered = set()
    for k in chosen:
        covered |= bigrams(inputs[k])
    rest = {k: bigrams(inputs[k]) for k in order if k not in set(chosen)}
    heap = [(-len(v - covered), len(inputs[k]), k) for k, v in rest.items()]
    heapq.heapify(heap)
    while heap and len(chosen) < most:
        gain, size, k = heapq.heappop(heap)
        fresh = len(rest[k] - covered)
        if fresh != -gain:  # stale: push back with its current gain (lazy greedy)
            if fresh:
                heapq.heappush(heap, (-fresh, size, k))
            continue
        if not fresh:
            break
        chosen.append(k)
        covered |= rest[k]
    return sorted(chosen)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max", type=int, default=300)
    ap.add_argument("--corpus", default=os.path.join(HERE, "corpus"))
    ap.add_argument("--seeds", default=os.path.join(HERE, "seeds"))
    args = ap.parse_args()
    nprofiles = builtin_profiles()
    targets = sorted(
        set(os.listdir(args.corpus) if os.path.isdir(args.corpus) else [])
        | set(os.listdir(args.seeds) if os.path.isdir(args.seeds) else [])
    )
    for t in targets:
        inputs = {}
        for base in (args.corpus, args.seeds):
            d = os.path.join(base, t)
            if not os.path.isdir(d):
                continue
            for name in os.listdir(d):
                p = os.path.join(d, name)
                if os.path.isfile(p) and not name.startswith("."):
                    data = open(p, "rb").read()
                    inputs[hashlib.sha1(data).hexdigest()] = data
        picked = choose(t, inputs, args.max, nprofiles)
        out = os.path.join(args.seeds, t)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        for k in picked:
            with open(os.path.join(out, k), "wb") as f:
                f.write(inputs[k])
        size = sum(len(inputs[k]) for k in picked)
        print(f"{t}: {len(inputs)} inputs -> {len(picked)} seeds, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
