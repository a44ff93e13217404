"""`imgcls plan` (what a config would create and cost, before anything is), and the rendering of the cost
views other commands print: `status --all` (what bills now) and `down --expired`."""
from __future__ import annotations

import sys

import click

from .options import State, load, shared_options
from .output import emit


@click.command()
@shared_options
@click.option("--no-quota", is_flag=True, help="Skip the read-only quota pre-flight even when credentials are found.")
@click.pass_obj
def plan(state: State, no_quota):
    """Show what the config would create and use, the training budget in the provider's units, and a
    dollar estimate (training + one day of the endpoint) from the price table shipped with imgcls
    (dated, per region, its source named). Creates nothing and needs no credentials; with credentials
    found, a read-only quota pre-flight adds warnings.

    \b
    Exit 0; 3 when a cap (train.max_cost_usd, deploy.max_cost_usd_per_day) is exceeded or cannot be
    checked; 5 when credentials are found but refused (the plan is printed all the same)."""
    from .. import api
    from ..errors import AuthError, ConfigError
    cfg = load(state)
    result = api.plan(cfg, quota=not no_quota, progress=state.progress)
    error = None
    if result["refused"]:
        error = ConfigError("over a cap: " + "; ".join(result["refused"]),
                            hint="raise the cap or lower the budget; nothing was created")
    elif result["quota"].get("error"):
        quota_error = result["quota"]["error"]
        error = AuthError(quota_error["message"], hint=quota_error.get("hint"))
    if error is not None:
        result["error"] = error.to_json()
    emit(state, result, render_plan)
    if error is not None:
        if not state.json:
            click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)


def _usd(part: dict) -> str:
    return f"${part['usd']:,.2f}" if part["usd"] is not None else "unknown"


def render_plan(p: dict) -> None:
    where = f" in {p['region']}" if p["region"] else ""
    click.echo(f"plan for '{p['name']}' on {p['provider']}{where} (nothing is created)")
    click.echo("  would create:")
    for r in p["creates"]:
        click.echo(f"    + {r['kind']:<20} {r['name']}" + (f"  ({r['note']})" if r["note"] else ""))
    if p["uses"]:
        click.echo("  would use (never created or deleted):")
        for r in p["uses"]:
            click.echo(f"    = {r['kind']:<20} {r['name']}" + (f"  ({r['note']})" if r["note"] else ""))
    b = p["budget"]
    if b.get("unit"):
        amount = "?" if b.get("amount") is None else f"{b['amount']:g}"
        click.echo(f"  training budget: {amount} {b['unit']}" + (f" — {b['note']}" if b.get("note") else ""))
    est = p["estimate_usd"]
    click.echo("  estimate (USD):")
    for key, label in (("training", "training"), ("endpoint_per_day", "endpoint, one day")):
        part = est[key]
        why = part.get("basis") or part.get("unknown")
        click.echo(f"    {label:<18} {_usd(part):>10}  {why}")
    click.echo(f"    {'total':<18} {_usd({'usd': est['total']}):>10}")
    if p["prices_as_of"]:
        click.echo(f"  prices as of {p['prices_as_of']}: " + "; ".join(p["price_sources"]))
    if p["ttl"]:
        click.echo(f"  deploy.ttl {p['ttl']}: `imgcls down --expired` removes the endpoint after that")
    for cap in p["caps"]:
        state = "ok" if cap["ok"] else "EXCEEDED"
        click.echo(f"  cap {cap['cap']} ${cap['limit_usd']:g}: {state}")
    q = p["quota"]
    click.echo(f"  quota pre-flight: {'checked' if q['checked'] else 'not checked'} — {q['detail']}")
    for w in q["warnings"]:
        click.echo(f"    warning: {w}")
    for note in p["notes"]:
        click.echo(f"  note: {note}")


def render_bills(result: dict) -> None:
    rows = result["runs"]
    if not rows:
        click.echo("no run holds anything live")
        return
    click.echo(f"{'run':<44} {'provider':<12} {'age':>8} {'left':>9} {'$/day':>9} {'$ so far':>9}")
    for r in rows:
        per_day = "-" if not r["deployed"] else (f"{r['endpoint_usd_per_day']:,.2f}"
                                                 if r["endpoint_usd_per_day"] is not None else "unknown")
        so_far = "-" if r["endpoint_usd_so_far"] is None else f"{r['endpoint_usd_so_far']:,.2f}"
        click.echo(f"{r['run']:<44} {r['provider']:<12} {r['age'] or '?':>8} {r['time_left'] or '-':>9} "
                   f"{per_day:>9} {so_far:>9}")
        click.echo(f"    live: {', '.join(r['live'])}")
    click.echo(f"endpoints together: ${result['endpoint_usd_per_day']:,.2f} a day"
               + ("" if result["complete"] else " (some unknown: see --json)"))


def render_expired(result: dict) -> None:
    if not result["expired"]:
        click.echo(f"no expired endpoint (now {result['now']})")
    verb = "would take down" if result["dry_run"] else "took down"
    for e in result["expired"]:
        what = ", ".join(f"{r['kind']} {r['id']} ({r['status']})" for r in e["removed"]) or "nothing left serving"
        click.echo(f"run {e['run']} ({e['provider']}, expired {e['expired_at']}): {verb} {what}")
    for n in result["not_yet_expired"]:
        click.echo(f"run {n['run']}: expires {n['expires_at']} ({n['left']} left)")


COMMANDS = [plan]
