"""Cost and safety rails: `plan` (what a config would create and cost, offline), the caps train/deploy/run
check before anything is created, a deploy that cleans up after itself when it fails and records its
expiry, `down --expired`, and `status --all` (what bills now)."""
from __future__ import annotations

from pathlib import Path

from .. import clock
from .. import runs as runs_mod
from ..config import RunConfig
from ..errors import AuthError, ConfigError, ImgclsError, ProviderError, TimedOut, UsageError
from ..progress import Progress
from ..providers import registry
from ..providers.base import Deployment, Provider, TrainResult
from ..runs import Run
from .runstate import QUIET, address, ask, runs_dir

# -- plan -------------------------------------------------------------------------------------


def plan(cfg: RunConfig, quota: bool = True, progress: Progress = QUIET) -> dict:
    """What `cfg` would create and use, the training budget and the estimate; the caps checked against it.
    Creates nothing. With credentials found (and `quota`), the provider's read-only pre-flight adds
    warnings; a refused credential is `quota.error` (the CLI exits 5 after printing the plan)."""
    cls = registry.provider_class(cfg.provider)          # the plan needs no SDK; the pre-flight does
    p = cls.plan(cfg)
    out = {"provider": p.provider, "name": cfg.name, "region": p.region,
           "creates": [_resource(r) for r in p.resources if r.action == "create"],
           "uses": [_resource(r) for r in p.resources if r.action != "create"],
           "budget": p.budget, "estimate_usd": p.estimate(), "prices_as_of": p.prices_as_of,
           "price_sources": p.price_sources, "notes": p.notes, "ttl": cfg.deploy.ttl,
           "caps": _caps(cfg, p, train=True, deploy=True), "quota": _quota(cls, cfg, quota, progress)}
    out["refused"] = [c["message"] for c in out["caps"] if not c["ok"]]
    return out


def _resource(r) -> dict:
    return {"kind": r.kind, "name": r.name, "note": r.note}


def _quota(cls: type[Provider], cfg: RunConfig, wanted: bool, progress: Progress) -> dict:
    if not wanted:
        return {"checked": False, "detail": "not asked for (--no-quota)", "warnings": []}
    try:
        creds = cls.check_credentials(cfg)
    except ImgclsError as exc:
        return {"checked": False, "detail": f"credentials not checked: {exc.message}", "warnings": []}
    if not creds.found:
        return {"checked": False, "detail": f"no credentials found ({creds.detail}): the quota pre-flight was "
                                            "skipped; the estimate needs none", "warnings": []}
    missing = registry.missing_modules(cfg.provider, cls)
    if missing:
        return {"checked": False, "detail": f"the quota pre-flight needs {missing[0]}: pip install "
                                            f"'imgcls[{cfg.provider}]'", "warnings": []}
    try:
        warnings = cls.preflight(cfg)
    except AuthError as exc:
        return {"checked": False, "detail": "the service refused the credentials", "warnings": [],
                "error": exc.to_json()}
    except Exception as exc:  # a pre-flight only adds warnings: whatever it hits, the plan stands
        detail = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        return {"checked": False, "detail": f"the pre-flight could not ask {cfg.provider}: {detail}", "warnings": []}
    for w in warnings:
        progress.warn(w)
    return {"checked": True, "detail": f"read-only checks with {creds.detail}", "warnings": warnings}


# -- caps -------------------------------------------------------------------------------------

def _caps(cfg: RunConfig, p, train: bool, deploy: bool) -> list[dict]:
    """Each cap the config sets, against its part of the estimate: ok, or the message that refuses."""
    out = []
    checks = ((train, "train.max_cost_usd", cfg.train.max_cost_usd, p.training, "training"),
              (deploy, "deploy.max_cost_usd_per_day", cfg.deploy.max_cost_usd_per_day, p.endpoint_per_day,
               "a day of the endpoint"))
    for wanted, key, cap, cost, what in checks:
        if not wanted or cap is None:
            continue
        if cost.usd is None:
            msg = (f"{key} = ${cap:g}, but the estimate for {what} on {cfg.provider} is unknown ({cost.basis}): "
                   "imgcls cannot promise to stay under the cap")
        elif cost.usd > cap:
            msg = f"{key} = ${cap:g}, but {what} on {cfg.provider} is estimated at ${cost.usd:g} ({cost.basis})"
        else:
            msg = None
        out.append({"cap": key, "limit_usd": cap, "estimate_usd": cost.usd, "ok": msg is None,
                    "message": msg})
    return out


def check_caps(cfg: RunConfig | None, run_id: str | None = None, train: bool = False,
               deploy: bool = False) -> None:
    """ConfigError (exit 3) naming the cap and the estimate when one would be exceeded (or cannot be
    known) — called before a command creates anything. No cap set: nothing is computed."""
    if cfg is None:
        if not run_id:
            return
        cfg, _ = address(None, run_id)
    if (not train or cfg.train.max_cost_usd is None) and (not deploy or cfg.deploy.max_cost_usd_per_day is None):
        return
    refused = [c for c in _caps(cfg, registry.provider_class(cfg.provider).plan(cfg), train, deploy) if not c["ok"]]
    if refused:
        raise ConfigError("refused before creating anything: " + "; ".join(c["message"] for c in refused),
                          hint="raise the cap, lower the budget (train.node_hours, train.budget_minutes, "
                               "deploy.max_replicas…), or see `imgcls plan`",
                          caps=refused)


# -- deploy: expiry, and cleaning up after a failure ------------------------------------------

def expiry(cfg: RunConfig, ttl: str | None):
    """When the endpoint deployed now expires (aware datetime), from --ttl or deploy.ttl; None: never."""
    given = ttl or cfg.deploy.ttl
    if not given:
        return None
    return clock.now() + (clock.parse_duration(ttl, "--ttl", UsageError) if ttl else clock.parse_duration(given))


def guarded_deploy(run: Run, provider: Provider, model: TrainResult, expires_at=None,
                   keep_on_failure: bool = False, progress: Progress = QUIET) -> Deployment:
    """provider.deploy_model, plus: what serves carries its expiry in the ledger; a deploy that fails
    (not one that timed out: that one is still under way and resumable) removes what it created in
    this step, or with `keep_on_failure` leaves it marked in the ledger and says how to remove it."""
    provider.expires_at = expires_at
    before = [dict(r) for r in run.live()]
    try:
        deployment = provider.deploy_model(model)
    except (TimedOut, KeyboardInterrupt):
        raise
    except Exception as exc:
        made = ask(lambda: provider.deploy_made(before), [])
        if not made:
            raise
        outcome = _after_failed_deploy(run, provider, made, keep_on_failure, exc, progress)
        if isinstance(exc, ImgclsError):
            exc.details["cleanup"] = outcome
            exc.hint = outcome["message"] + (f"; {exc.hint}" if exc.hint else "")
        raise
    # The provider may keep an expiry it cannot move (a local server reused, with its own timer).
    expires_at = provider.expires_at
    stamp = clock.stamp(expires_at) if expires_at is not None else None
    for res in provider.serving_resources():
        run.update_resource(res, expires_at=stamp)
    return deployment


def _after_failed_deploy(run: Run, provider: Provider, made: list[dict], keep: bool, exc: Exception,
                         progress: Progress) -> dict:
    removed, left, failed = [], [], []
    for res in reversed(made):
        what = f"{res['kind']} {res.get('id') or res.get('name')}"
        if keep:
            run.update_resource(res, left_by_failed_deploy=True)
            left.append(what)
            continue
        try:
            res = _settle(provider, run, res)
            if res is None:
                removed.append(f"{what} (never created)")
                continue
            note = provider.undeploy(res)
            run.update_resource(res, removed_by="failed deploy")
            removed.append(f"{what} ({note})")
            progress.log(f"deploy failed: {note} {what}")
        except (ImgclsError, OSError) as cleanup_exc:
            failed.append(f"{what}: {getattr(cleanup_exc, 'message', None) or cleanup_exc}")
    error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    if keep:
        message = (f"kept what the failed deploy created ({', '.join(left)}; marked left_by_failed_deploy in "
                   f"the ledger): `imgcls down --run {run.id}` removes it")
    elif failed:
        message = (f"the failed deploy's resources could not all be removed ({'; '.join(failed)}): "
                   f"`imgcls down --run {run.id}` tries again")
    else:
        message = f"removed what the failed deploy created ({', '.join(removed)})"
    outcome = {"removed": removed, "left": left, "failed": failed, "message": message}
    run.set_step("deploy_failed", {"error": error, **outcome})
    run.event(f"deploy failed: {error}; {message}")
    return outcome


def _settle(provider: Provider, run: Run, res: dict) -> dict | None:
    """An entry to take down: as recorded, or (pending: its create call's answer never came) looked up
    with the service by its name. None when there is nothing to take down under this entry."""
    if res["status"] != "pending":
        return res
    found = provider.find(res)
    if found is None:
        run.mark_deleted(res, "abandoned")
        return None
    found = dict(found)
    rid = found.pop("id")
    if any(r is not res and r["kind"] == res["kind"] and r.get("id") == rid for r in run.live()):
        run.mark_deleted(res, "abandoned")       # the same resource is recorded under its id: taken down there
        return None
    return run.record(res["kind"], rid, name=res["name"], **found)


# -- down --expired and status --all ------------------------------------------------------------

def _root(runs_root: str | Path | None) -> Path:
    return Path(runs_root) if runs_root else runs_dir(None)


def _expires(run: Run):
    """When the run's endpoint expires: its deploy step's expiry, else the earliest one its live serving
    resources carry (a ledger rebuilt from its backup, or a kill between the two writes, can have the
    resources without the step)."""
    step = (run.step("deploy") or {}).get("expires_at")
    stamps = [step] if step else [r.get("expires_at") for r in run.live()]
    times = []
    for stamp in filter(None, stamps):
        try:
            times.append(clock.parse_time(stamp))
        except ValueError:
            continue
    return min(times, default=None)


def expiry_view(run: Run) -> dict:
    """For `status`: when the run's endpoint expires and the time left (nothing when it has no TTL)."""
    when = _expires(run)
    if when is None:
        return {}
    now = clock.now()
    return {"expires_at": clock.stamp(when), "time_left": "expired" if when <= now else clock.human(when - now)}


def down_expired(runs_root: str | Path | None = None, dry_run: bool = False, progress: Progress = QUIET) -> dict:
    """Take down the endpoints (only what serves: endpoints, deployments, publications, started models,
    servers) of every run under the project whose deploy.ttl has passed. Everything else stays."""
    from .state import config_for
    now = clock.now()
    found, _ = runs_mod.scan(_root(runs_root))
    done, failed, not_yet = [], [], []
    for run in found:
        when = _expires(run)
        if when is None:
            continue
        if when > now:
            not_yet.append({"run": run.id, "expires_at": clock.stamp(when), "left": clock.human(when - now)})
            continue
        try:
            provider = registry.get(run.provider)(config_for(run, None), run, progress)
            serving = provider.serving_resources()
        except ImgclsError as exc:
            failed.append({"run": run.id, "error": exc.message})
            continue
        entry = {"run": run.id, "provider": run.provider, "expired_at": clock.stamp(when), "removed": []}
        for res in reversed(serving):
            what = {"kind": res["kind"], "id": res.get("id") or res.get("name")}
            if dry_run:
                entry["removed"].append({**what, "status": "would remove"})
                continue
            try:
                res = _settle(provider, run, res)
                note = "abandoned (never created)" if res is None else provider.undeploy(res)
            except (ImgclsError, OSError) as exc:
                failed.append({"run": run.id, **what, "error": getattr(exc, "message", None) or str(exc)})
                continue
            entry["removed"].append({**what, "status": note})
            progress.log(f"run {run.id}: {note} {what['kind']} {what['id']} (expired {clock.stamp(when)})")
        if not dry_run and not any(f["run"] == run.id for f in failed):
            run.drop_step("deploy")
            run.event(f"down --expired: the endpoint expired at {clock.stamp(when)}; "
                      f"{len(entry['removed'])} serving resource(s) taken down")
        done.append(entry)
    result = {"now": clock.stamp(now), "dry_run": dry_run, "expired": done, "not_yet_expired": not_yet,
              "failed": failed}
    if failed:
        raise ProviderError(f"{len(failed)} expired endpoint resource(s) could not be taken down: "
                            + "; ".join(f"run {f['run']}: {f['error']}" for f in failed),
                            hint="run `imgcls down --expired` again; the ledgers still list them", **result)
    return result


def bills(runs_root: str | Path | None = None) -> dict:
    """Every run with live resources: provider, age, what serves, expiry and time left, and the
    estimated cost of its endpoint per day and since it was deployed (from the run's own config and
    the shipped prices; unknown where they do not reach). Reads ledgers only: no service is called."""
    from .state import config_for
    now = clock.now()
    found, damaged = runs_mod.scan(_root(runs_root))
    rows, total, unknown_any = [], 0.0, False
    for run in found:
        live = run.live()
        if not live:
            continue
        led = run.ledger
        deploy = run.step("deploy") or {}
        row = {"run": run.id, "name": led["name"], "provider": led["provider"], "created": led["created"],
               "age": _age(led["created"], now), "live": [f"{r['kind']} {r.get('id') or r.get('name')}" for r in live],
               "deployed": bool(deploy), "expires_at": deploy.get("expires_at"), "time_left": None,
               "endpoint_usd_per_day": None, "endpoint_usd_so_far": None, "estimate": None}
        when = _expires(run)
        if when is not None:
            row["time_left"] = "expired" if when <= now else clock.human(when - now)
        if deploy:
            try:
                cost = registry.provider_class(run.provider).plan(config_for(run, None)).endpoint_per_day
            except (ImgclsError, OSError) as exc:
                cost = None
                row["estimate"] = f"unknown: {getattr(exc, 'message', None) or exc}"
            if cost is not None:
                row["estimate"] = cost.basis
                if cost.usd is not None:
                    since = _since(deploy.get("updated"), now)
                    row["endpoint_usd_per_day"] = cost.usd
                    row["endpoint_usd_so_far"] = round(cost.usd * since, 2) if since is not None else None
                    total += cost.usd
            unknown_any = unknown_any or row["endpoint_usd_per_day"] is None
        rows.append(row)
    return {"now": clock.stamp(now), "runs": rows, "endpoint_usd_per_day": round(total, 2),
            "complete": not unknown_any,
            "damaged": [{"run": d.id, "reason": d.reason} for d in damaged]}


def _age(stamp: str | None, now) -> str | None:
    try:
        return clock.human(now - clock.parse_time(stamp)) if stamp else None
    except ValueError:
        return None


def _since(stamp: str | None, now) -> float | None:
    """Days from `stamp` to now (0 when the clock reads earlier)."""
    try:
        return max(0.0, (now - clock.parse_time(stamp)).total_seconds() / 86400) if stamp else None
    except ValueError:
        return None
