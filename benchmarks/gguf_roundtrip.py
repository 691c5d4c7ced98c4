"""GGUF export round trip on real runs: greedy agreement of the GGUF read back with the merged model.

    PYTHONPATH=src python benchmarks/gguf_roundtrip.py --run runs/hotel_lora [--run RUN2] \
        [--quants q8_0,f16] [--prompts-file data/hotel/test.jsonl] [--n 16] [--new-tokens 32] [--out-dir /tmp/gguf]

Each run is exported once per quant with `export_gguf` (what `tunelab export RUN --gguf OUT --quant Q
--check-prompts N --check-prompts-file FILE --check-new-tokens T` does); the GGUF files stay in
--out-dir, out of git. It reports tokens identical out of N, the tokenizer's agreement, each differing
prompt's first differing position, and the file size; results go to benchmarks/results/gguf_roundtrip.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tunelab.infer.export import export_gguf
from tunelab.utils.io import write_text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", required=True, help="a tunelab run (repeat for several)")
    ap.add_argument("--quants", default="q8_0,f16")
    ap.add_argument("--prompts-file", default="data/hotel/test.jsonl")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--out-dir", default="/tmp/gguf_roundtrip")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "gguf_roundtrip.md"))
    args = ap.parse_args()
    rows = []
    for run in args.run:
        base = json.loads((Path(run) / "run.json").read_text()).get("base_model", "?")
        for quant in args.quants.split(","):
            out = Path(args.out_dir) / f"{Path(run).name}-{quant}.gguf"
            start = time.perf_counter()
            result = export_gguf(run, out, quant=quant, check_prompts=args.n, prompts_file=args.prompts_file,
                                 max_new_tokens=args.new_tokens)
            rt = result["round_trip"]
            diffs = [(i, d["first_diff"]) for i, d in enumerate(rt.details) if d["first_diff"] is not None]
            rows.append((run, base, quant, rt, diffs, out.stat().st_size / 2**20, time.perf_counter() - start))
            print(rt.line(quant), json.dumps(diffs), flush=True)
    cmd = "PYTHONPATH=src python benchmarks/gguf_roundtrip.py " + " ".join(sys.argv[1:])
    table = (
        f"# GGUF round trip on real runs ({args.n} prompts: the first user turns of {args.prompts_file}, "
        f"{args.new_tokens} greedy tokens each)\n\n"
        f"Command: `{cmd.strip()}`\n\n"
        "| run (base) | quant | greedy tokens identical | tokenizer identical | first differing token "
        "(prompt: position) | GGUF size | export + round trip |\n|---|---|---|---|---|---|---|\n"
        + "".join(f"| {Path(r).name} ({b}) | {q} | {rt.same_tokens}/{rt.prompts} | {rt.same_prompt_ids}/{rt.prompts} | "
                  f"{', '.join(f'#{i}: {p}' for i, p in diffs) or 'none'} | {mib:.1f} MiB | {sec / 60:.1f} min |\n"
                  for r, b, q, rt, diffs, mib, sec in rows)
    )
    print(table)
    write_text(Path(args.out), table)


if __name__ == "__main__":
    main()
