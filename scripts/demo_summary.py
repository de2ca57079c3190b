"""Prints the summary table of `make demo` from the files scripts/demo left in target-demo/.

Each system's demo prints its JSON report as the last stdout line; this picks a few headline
figures per system. Exit status: 0 when every demo exited 0, else 1.
"""
import json
import pathlib
import sys

HEADLINES = {
    "p2plive": ["peers", "substreams", "p2p_ratio", "cdn_bytes", "stream_bytes"],
    "streamgate": ["public_port", "fanout", "restart", "errors"],
    "dataloop": ["ingested", "warehouse_version", "olap_rows", "eval_windows", "ade_margin_pct", "fde_margin_pct"],
    "pagefeat": ["pages", "nodes_total", "ad", "soft404", "popups_found"],
    "txrelay": ["submitted", "mined", "notifications", "latency_after_inclusion_ms"],
}


def headline(system, report):
    if report is None:
        return "no JSON report"
    parts = []
    for key in HEADLINES.get(system, []):
        if key in report:
            value = report[key]
            text = json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else str(value)
            parts.append(f"{key}={text}")
    return " ".join(parts)[:160]


def main(out_dir):
    out = pathlib.Path(out_dir)
    rows = []
    failed = False
    for line in (out / "status.tsv").read_text().splitlines():
        system, code, millis = line.split("\t")
        seconds = int(millis) / 1000
        report = None
        out_file = out / f"{system}.out"
        if out_file.exists():
            lines = [l for l in out_file.read_text().splitlines() if l.strip()]
            if lines:
                try:
                    report = json.loads(lines[-1])
                except json.JSONDecodeError:
                    report = None
        ok = code == "0" and report is not None
        failed |= not ok
        rows.append((system, "PASS" if ok else f"FAIL ({code})", f"{seconds:.1f}", headline(system, report)))
    widths = [max(len(r[i]) for r in rows + [("system", "result", "seconds", "figures")]) for i in range(3)]
    print()
    print(f"{'system':<{widths[0]}}  {'result':<{widths[1]}}  {'seconds':>{widths[2]}}  figures")
    for system, result, seconds, figures in rows:
        print(f"{system:<{widths[0]}}  {result:<{widths[1]}}  {seconds:>{widths[2]}}  {figures}")
    print(f"\nreports: {out}/<system>.out (JSON), logs: {out}/<system>.log")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
