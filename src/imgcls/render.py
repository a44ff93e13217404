"""Human renderings of results for the terminal (and the compare table as HTML); --json bypasses them."""
from __future__ import annotations

import json
import sys

import click


def render_validation(result: dict) -> None:
    s = result["summary"]
    click.echo(f"{s['images']} images, {s['labels']} labels "
               f"(train {s['splits']['train']}, validation {s['splits']['validation']}, test {s['splits']['test']})"
               f" — checked for {result['provider']}")
    if s.get("skipped_hidden"):
        click.echo(f"  ({s['skipped_hidden']} hidden images skipped: hidden files and everything under hidden "
                   "folders, such as .thumbs/)")
    for f in result["findings"]:
        click.echo(f"  {f['level'].upper():7} {f['code']}: {f['message']}")
        click.echo(f"          fix: {f['fix']}")
    if result.get("fixed_manifest"):
        for label, into in (m for f in result["findings"] for m in f.get("merge", ())):
            click.echo(f"merged label '{label}' into '{into}'")
        click.echo(f"cleaned manifest: {result['fixed_manifest']} (run {result['run']}, "
                   f"{len(result['dropped'])} images left out)")
    if not result["findings"]:
        click.echo("no problems found")


def render_evaluation(run_id: str, ev) -> None:
    m = ev.metrics
    click.echo(f"run {run_id} on {ev.provider}: {m['n_images']} test images")
    ci = m.get("accuracy_ci95")  # absent from evaluations written before it was reported
    interval = f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""
    click.echo(f"  accuracy {m['accuracy']:.4f}{interval}   log loss {_f(m.get('log_loss'))}   "
               f"at threshold {m['threshold']}: precision {_f(m['micro']['precision'])} "
               f"recall {_f(m['micro']['recall'])} f1 {_f(m['micro']['f1'])}   AuPRC {_f(m['micro'].get('auprc'))}")
    click.echo(f"  {'label':<20} {'precision':>9} {'recall':>7} {'f1':>6} {'auprc':>6} {'support':>7}")
    for label, v in m["per_label"].items():
        click.echo(f"  {label[:20]:<20} {_f(v['precision']):>9} {_f(v['recall']):>7} {_f(v['f1']):>6} "
                   f"{_f(v.get('auprc')):>6} {v['support']:>7}")
    for g in ev.gates:
        click.echo(f"  gate {g['metric']} {g['op']} {g['bound']}: {_f(g['value'])} "
                   f"{'passed' if g['passed'] else 'FAILED'}")
    for w in m.get("warnings", []):
        click.echo(f"  note: {w}")
    if ev.report:
        click.echo(f"  report: {ev.report}")


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def render_predictions(preds, fmt: str) -> None:
    from .runs import to_jsonable
    if fmt == "jsonl":
        for p in preds:
            click.echo(json.dumps(to_jsonable(p)))
    elif fmt == "csv":
        import csv
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["image", "labels", "top_label", "top_score", "scores"])
        for p in preds:
            top = next(iter(p.scores.items()), ("", 0.0))
            w.writerow([p.image, ";".join(p.labels), top[0], f"{top[1]:.6f}", json.dumps(p.scores)])
    else:
        for p in preds:
            scores = "  ".join(f"{l} {s:.3f}" for l, s in p.scores.items())
            click.echo(f"{p.image}\n  -> {', '.join(p.labels) or '(below threshold)'}   [{scores}]")


def render_runs(result: dict) -> None:
    if not result["runs"] and not result.get("damaged"):
        click.echo("no runs yet")
    for r in result["runs"]:
        live = f"{r['live']} live: {', '.join(r['live_resources'])}" if r["live"] else "nothing live"
        click.echo(f"{r['run']:<44} {r['provider']:<13} {r['state']:<16} {r['created']:<26} "
                   f"data {r['data_fingerprint'] or '?':<16} {live}")
    for d in result.get("damaged", []):
        click.echo(f"{d['run']:<44} DAMAGED: {d['ledger']}: {d['reason']} — {d['hint']}")


def render_status(result: dict) -> None:
    if "runs" in result:
        render_runs(result)
        return
    click.echo(f"run {result['run']} ({result['provider']}, {result['state']}), created {result['created']}\n"
               f"  {result['path']}")
    for name, step in result["steps"].items():
        brief = {k: v for k, v in step.items() if k in ("status", "id", "model_id", "accuracy", "endpoint", "images")}
        click.echo(f"  {name:<10} {json.dumps(brief)}")
    if result.get("training"):
        t = result["training"]
        click.echo(f"  training op {t['id']}: {t.get('state')} {t.get('status', '')}")
    for r in result["resources"]:
        seen = "" if r["observed"] == r["status"] else f" (observed: {r['observed']})"
        owner = "" if r.get("ours", True) else " [not created by imgcls]"
        click.echo(f"  {r['status']:<8} {r['kind']:<18} {r.get('id') or r.get('name')}{owner}{seen}")
    if result.get("expires_at"):
        click.echo(f"  endpoint expires {result['expires_at']} ({result['time_left']}"
                   + (" left" if result["time_left"] != "expired" else "; `imgcls down --expired` removes it") + ")")
    if result.get("unchecked"):
        click.echo(f"  note: {result['unchecked']}")


def render_down(result: dict) -> None:
    if result.get("message"):
        click.echo(result["message"])
        return
    for d in result["deleted"]:  # what the provider said it did: deleted, archived, cancelled, gone
        verb = "would delete" if result["dry_run"] else d.get("status") or "deleted"
        click.echo(f"{verb:<13} {d['kind']:<12} {d.get('id')}  (run {d['run']})")
    for k in result["kept"]:
        click.echo(f"{'kept':<13} {k['kind']:<12} {k.get('id')}  (run {k['run']}: {k['reason']})")
    for a in result["abandoned"]:
        click.echo(f"{'nothing made':<13} {a['kind']:<12} {a.get('name')}  (run {a['run']}: {a['reason']})")


def render_providers(rows: list[dict]) -> None:
    click.echo(f"{'provider':<13} {'installed':<10} {'multilabel':<10} {'export':<22} {'min/label':<9} credentials")
    for r in rows:
        caps, lim = r.get("capabilities", {}), r.get("limits", {})
        installed = "yes" if r["installed"] else "no"
        creds = r.get("credentials", {})
        cred = ("found: " if creds.get("found") else "missing: ") + creds.get("detail", "") if creds else \
            f"pip install 'imgcls[{caps.get('extra') or r['name']}]'"
        click.echo(f"{r['name']:<13} {installed:<10} {str(caps.get('multilabel', '?')).lower():<10} "
                   f"{','.join(caps.get('export', ())) or '-':<22} {lim.get('min_images_per_label', '?')!s:<9} {cred}")
        if caps.get("notice"):
            click.echo(f"{'':<13} note: {caps['notice']}")


def _compare_lines(result: dict) -> list[list[str]]:
    head = ["run", "provider", "accuracy", "precision", "recall", "macro f1", "log loss", "train s"]
    rows = [[r["name"], r.get("provider") or "", _f(r["accuracy"]), _f(r["micro_precision"]),
             _f(r["micro_recall"]), _f(r["macro_f1"]), _f(r["log_loss"]),
             "n/a" if r.get("train_seconds") is None else f"{r['train_seconds']:.0f}"] for r in result["table"]]
    return [head, *rows]


def render_compare(result: dict) -> None:
    lines = _compare_lines(result)
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    for row in lines:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    click.echo(f"\n{result['n_images']} shared test images{' (forced)' if result.get('forced') else ''}; "
               f"baseline {result['baseline']}")
    for p in result["pairwise"]:
        m = p["mcnemar"]
        click.echo(f"  {p['name']} vs baseline: accuracy difference {p['accuracy_diff']:+.4f} "
                   f"[{p['ci_low']:+.4f}, {p['ci_high']:+.4f}] ({p['confidence']:.0%} bootstrap CI); "
                   f"McNemar p = {m['p_value']:.4g} ({m['b01']} vs {m['b10']} discordant)")
    for name, deltas in result["per_label_f1_delta"].items():
        shown = ", ".join(f"{l} {d:+.3f}" for l, d in deltas.items() if d is not None)
        click.echo(f"  F1 change, {name}: {shown}")


def render_migration(result: dict) -> None:
    if result["config_written"]:
        click.echo(f"wrote {result['config']} (provider {result['new']['provider']}, data {result['source']})")
    click.echo(f"old: run {result['old']['run']} = {result['old']['adopted']}; "
               f"new: run {result['new']['run']} on {result['new']['provider']}\n")
    render_compare(result["comparison"])
    for warning in result["warnings"]:
        click.echo(f"\nnote: {warning}")


def render_compare_html(result: dict) -> str:
    import html
    lines = _compare_lines(result)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in lines[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in lines[1:])
    pairs = "".join(f"<li>{html.escape(p['name'])}: {p['accuracy_diff']:+.4f} [{p['ci_low']:+.4f}, "
                    f"{p['ci_high']:+.4f}], McNemar p = {p['mcnemar']['p_value']:.4g}</li>"
                    for p in result["pairwise"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>imgcls compare</title>"
            f"<link rel='icon' href='data:,'><style>body{{font-family:sans-serif}}td,th{{padding:4px 10px;"
            f"border-bottom:1px solid #ddd;text-align:left}}</style></head><body><h1>Run comparison</h1>"
            f"<table><tr>{head}</tr>{body}</table><p>{result['n_images']} shared test images.</p>"
            f"<ul>{pairs}</ul></body></html>")
