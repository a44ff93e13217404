"""What runs hold and how they go: `status` and `runs` (read only, asking the provider before saying
"up"), `down` (deletes only what a run created, reconciles what a kill left pending, hands shared
resources on to the runs still using them) and `doctor` (a damaged ledger rebuilt)."""
from __future__ import annotations

from pathlib import Path

from .. import runs as runs_mod
from ..config import RunConfig
from ..errors import ConfigError, DataError, ImgclsError, ProviderError, UsageError
from ..progress import Progress
from ..providers.base import StillInUse
from ..runs import Run
from ..runs.store import LedgerStore, now
from .runstate import (
    QUIET,
    ask,
    build_manifest,
    config_fingerprint,
    data_fingerprint,
    is_run_of,
    provider_for,
    run_data_fingerprint,
    runs_dir,
    warn_damaged,
)


def _root(cfg: RunConfig | None, runs_root: str | Path | None) -> Path:
    return Path(runs_root) if runs_root else runs_dir(cfg)


def config_for(run: Run, cfg: RunConfig | None) -> RunConfig:
    """The config a run's resources were made with (its own copy), with the secrets that copy never
    holds taken from the config the user gave now. When that copy is gone or unreadable: the config given
    now (of the run's provider), else, for a provider whose ledger entries locate its resources, a bare one."""
    try:
        saved = run.config()
    except ConfigError:
        if cfg is not None and cfg.provider == run.provider:
            return cfg
        from ..providers import registry
        if not registry.provider_class(run.provider).ledger_locates:
            raise
        return RunConfig.model_validate({"name": run.name, "provider": run.provider, "from_run": run.id,
                                         "dataset": {"source": str(run.path)}})
    if cfg is None or cfg.provider != saved.provider:
        return saved
    mine, theirs = getattr(saved, saved.provider, None), getattr(cfg, cfg.provider, None)
    if mine is None or theirs is None:
        return saved
    secrets = {n: getattr(theirs, n) for n, f in type(theirs).model_fields.items()
               if f.exclude and getattr(mine, n, None) is None}
    return saved.model_copy(update={saved.provider: mine.model_copy(update=secrets)}) if secrets else saved


def _provider(run: Run, cfg: RunConfig | None, progress: Progress):
    return provider_for(config_for(run, cfg), run, progress)


# -- status and runs --------------------------------------------------------------------------

def runs(runs_root: str | Path | None = None) -> dict:
    """Every run under the project: provider, state, created, data fingerprint and what is still live
    (as recorded; `status --run` asks the provider). Damaged ledgers are listed, never skipped."""
    found, damaged = runs_mod.scan(_root(None, runs_root))
    return {"runs": [summary(r) for r in found],
            "damaged": [{"run": d.id, "ledger": str(d.path), "reason": d.reason,
                         "hint": f"`imgcls doctor --run {d.id}` rebuilds it"} for d in damaged]}


def summary(run: Run) -> dict:
    led = run.ledger
    live = run.live()
    return {"run": run.id, "name": led["name"], "provider": led["provider"], "state": _state(run),
            "created": led["created"], "data_fingerprint": led.get("data_fingerprint"),
            "live": len(live), "live_resources": [f"{r['kind']} {r.get('id') or r.get('name')}" for r in live],
            "steps": sorted(led["steps"])}


def _state(run: Run) -> str:
    steps, op = run.ledger["steps"], run.operation("train")
    if run.ledger.get("adopted"):               # a model imgcls did not train: never "trained" or "deployed"
        return "adopted, evaluated" if "evaluate" in steps else "adopted"
    if steps.get("deploy") and run.live():
        return "deployed"
    if (steps.get("train") or {}).get("status") == "failed":
        return "training failed"
    for step, state in (("evaluate", "evaluated"), ("train", "trained")):
        if step in steps and (step != "train" or steps[step].get("status") == "succeeded"):
            return state
    if op and op.get("state") == "running":
        return "training"
    return "imported" if "import" in steps else "new"


def status(cfg: RunConfig | None = None, run_id: str | None = None, runs_root: str | None = None,
           progress: Progress = QUIET) -> dict:
    """One run (by id, or the latest of the config): its steps, training state and resources, each
    checked with the provider. With neither, the list of runs. Never trains, uploads or deletes."""
    root = _root(cfg, runs_root)
    if run_id is None and cfg is None:
        return runs(root)
    if run_id is not None:
        run = runs_mod.open_run(root, run_id)
    else:
        run = _run_of(cfg, root, progress)
        if run is None:
            raise UsageError(f"no run of '{cfg.name}' on {cfg.provider} in {root} yet",
                             hint="start one with `imgcls run`; `imgcls runs` lists what there is")
    try:
        provider = _provider(run, cfg, progress)
    except ImgclsError as exc:          # no SDK or credentials here: show the ledger, say what is unchecked
        provider, unchecked = None, exc.message
    else:
        unchecked = None
    failed: list[str] = []  # what the provider answered when asked: why something shows as unknown
    op = run.operation("train")
    if op and op.get("state") == "running" and provider is not None:
        state, details = ask(lambda: provider.describe_training(op), ("unknown", {}), failed)
        op = {**op, "state": state, **{k: v for k, v in details.items() if k in ("status", "error", "model_id")}}
    resources = []
    for res in run.ledger["resources"]:
        seen = res["status"]
        if res["status"] == "active":
            seen = ask(lambda r=res: provider.probe(r), "unknown", failed) if provider is not None else "unknown"
        resources.append({**res, "observed": seen})
    out = {"run": run.id, "path": str(run.path), "provider": run.provider, "created": run.ledger["created"],
           "state": _state(run), "steps": run.ledger["steps"], "training": op, "resources": resources}
    if failed and not unchecked:
        unchecked = failed[0] + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
    if unchecked:
        out["unchecked"] = f"resources not checked with {run.provider}: {unchecked}"
    from .costs import expiry_view
    out.update(expiry_view(run))
    return out


def report_path(run_id: str | None = None, runs_root: str | Path | None = None, cfg: RunConfig | None = None,
                progress: Progress = QUIET) -> Path:
    """The HTML report of `run_id`; else of the run every command picks for `cfg`; else of the newest
    evaluated run."""
    from ..comparison import report_path as path_of
    if run_id is None and cfg is not None:
        run = _run_of(cfg, _root(cfg, runs_root), progress)
        if run is None:
            raise UsageError(f"no run of '{cfg.name}' on {cfg.provider} yet, so no report",
                             hint="`imgcls evaluate` makes one")
        run_id = run.id
    return path_of(run_id, _root(cfg, runs_root) if cfg is not None else runs_root)


def _run_of(cfg: RunConfig, root: Path, progress: Progress) -> Run | None:
    """The run the other commands would pick for `cfg`: the newest of its config and data. The data are
    read (hashed) only when runs of the config differ in data; with no run of the config, the newest of
    its name and provider."""
    fingerprint = config_fingerprint(cfg)
    same = [r for r in runs_mod.list_runs(root) if is_run_of(r, cfg, fingerprint)]
    if len({run_data_fingerprint(r) for r in same}) > 1:
        data = data_fingerprint(build_manifest(cfg, progress))
        same = [r for r in same if is_run_of(r, cfg, fingerprint, data)] or same
    return same[0] if same else runs_mod.latest(root, cfg.name, cfg.provider)


# -- down -------------------------------------------------------------------------------------

def down(cfg: RunConfig | None = None, run_id: str | None = None, keep: tuple[str, ...] = (),
         dry_run: bool = False, runs_root: str | None = None, progress: Progress = QUIET) -> dict:
    """Tear down what runs created: `run_id`, or every run of the config's name and provider that still
    holds something live (whatever was edited since). Only resources imgcls created are deleted;
    what a run merely used is released, and what another live run still uses is handed on to it."""
    root = _root(cfg, runs_root)
    unread = []  # runs of this config whose ledger cannot be read: what they hold is unknown
    if run_id:
        targets = [runs_mod.open_run(root, run_id)]
    elif cfg is not None:
        found, damaged = runs_mod.scan(root)
        unread = warn_damaged(damaged, cfg, progress)
        targets = [r for r in found if r.name == cfg.name and r.provider == cfg.provider and r.live()]
    else:
        raise UsageError("down needs -c CONFIG or --run RUN_ID", hint="`imgcls runs` lists the runs")
    keep = (keep,) if isinstance(keep, str) else tuple(keep)
    _check_keep(keep, targets)
    done = [_down_one(run, cfg, keep, dry_run, root, progress) for run in targets]
    result = {"run": done[0]["run"] if done else None, "runs": done, "dry_run": dry_run,
              **{k: [e for d in done for e in d[k]] for k in ("deleted", "kept", "abandoned", "failed")}}
    if not done or not any(d[k] for d in done for k in ("deleted", "kept", "abandoned", "failed")):
        what = f"run {run_id}" if run_id else f"'{cfg.name}' on {cfg.provider}"
        result["message"] = f"nothing live to take down for {what}"
    failed = result["failed"]
    if failed:
        raise ProviderError(f"{len(failed)} resource(s) could not be deleted: "
                            + "; ".join(f"{f['kind']} {f['id']} (run {f['run']}): {f['error']}" for f in failed),
                            hint="run `imgcls down` again; the ledgers still list them", **result)
    if unread:  # not "nothing live": a CI clean-up step must not pass while such a run may still serve
        ids = ", ".join(d.id for d in unread)
        raise DataError(f"{len(unread)} run(s) of '{cfg.name}' on {cfg.provider} have a damaged ledger, so what "
                        f"they hold is unknown and was not taken down: {ids}",
                        hint=f"`imgcls doctor --run {unread[0].id}` rebuilds it; then run `imgcls down` again",
                        damaged=[d.id for d in unread], **{k: v for k, v in result.items() if k != "message"})
    return result


# The kinds `down`'s --keep-project/--keep-model/--keep-dataset stand for: kept quietly when no run holds one.
KEEP_SHORTHANDS = {"project": ("project", "image"), "model": ("model",), "dataset": ("dataset", "data", "blob", "object")}


def _check_keep(keep: tuple[str, ...], targets: list[Run]) -> None:
    """A kind to keep that no run holds is a typo until shown otherwise: refused before anything is deleted
    (`--keep sever` must not take the server down)."""
    held = sorted({r["kind"] for run in targets for r in run.live()})
    shorthands = {kind for kinds in KEEP_SHORTHANDS.values() for kind in kinds}
    unknown = [k for k in keep if k not in held and k not in shorthands]
    if unknown and held:
        raise UsageError(f"--keep {', '.join(unknown)}: no run here holds a resource of that kind (they hold: "
                         f"{', '.join(held)}); nothing was deleted", hint="give --keep one of the kinds they hold")


def _down_one(run: Run, cfg: RunConfig | None, keep: tuple[str, ...], dry_run: bool, root: Path,
              progress: Progress) -> dict:
    provider = _provider(run, cfg, progress)
    out = {"run": run.id, "deleted": [], "kept": [], "abandoned": [], "failed": []}
    for res in reversed(run.live()):
        entry = {**res, "run": run.id}
        if res["kind"] in keep:
            out["kept"].append({**entry, "reason": f"--keep {res['kind']}"})
            continue
        if res["status"] == "pending":
            found = provider.find(res)
            if found is None:
                out["abandoned"].append({**entry, "reason": "its create call never made it (nothing to delete)"})
                if not dry_run:
                    run.mark_deleted(res, "abandoned")
                continue
            found = dict(found)
            res = entry = {**res, **found, "status": "active", "run": run.id}
            if not dry_run:
                run.record(res["kind"], found.pop("id"), name=res["name"], **found)
        if not res.get("ours", True):
            out["kept"].append({**entry, "reason": "not created by imgcls (the run only used it)"})
            if not dry_run:
                run.mark_deleted(res, "released")
            continue
        users = _other_users(run, res, root) if res["kind"] in provider.shared_kinds else []
        if users:
            out["kept"].append({**entry, "reason": f"still used by run {users[0].id}, which now owns it"})
            if not dry_run:
                users[0].update_resource(res, ours=True, inherited_from=run.id)
                run.mark_deleted(res, f"handed over to {users[0].id}")
            continue
        if dry_run:
            out["deleted"].append(entry)
            continue
        progress.log(f"deleting {res['kind']} {res.get('id')} (run {run.id})")  # a cloud delete can take minutes
        try:
            note = provider.delete(res)   # None, or a status such as "archived", "cancelled", "gone"
        except StillInUse as exc:
            out["kept"].append({**entry, "reason": exc.message})
            continue
        except (ProviderError, OSError) as exc:
            out["failed"].append({**entry, "error": getattr(exc, "message", None) or str(exc)})
            continue
        run.mark_deleted(res, note or "deleted")
        out["deleted"].append({**entry, "status": note or "deleted"})
    if not dry_run:
        if run.step("deploy") and not any(k["kind"] in keep for k in out["kept"]):
            run.drop_step("deploy")
        run.event(f"down: {len(out['deleted'])} deleted, {len(out['kept'])} kept, "
                  f"{len(out['abandoned'])} abandoned, {len(out['failed'])} failed")
    return out


def _other_users(run: Run, res: dict, root: Path) -> list[Run]:
    """Other runs whose ledgers list the same resource as live: they still depend on it."""
    return [r for r in runs_mod.list_runs(root) if r.id != run.id
            and any(runs_mod.same_entry(res, x) for x in r.live())]


# -- doctor -----------------------------------------------------------------------------------

def doctor(run_id: str | None = None, runs_root: str | None = None, progress: Progress = QUIET) -> dict:
    """Rebuild damaged ledgers: from ledger.json.bak when it is sound, else from the run folder (its
    config, steps left in results/); the damaged file is kept beside it. Then pending entries are
    reconciled with the provider where it can be asked."""
    root = _root(None, runs_root)
    _, damaged = runs_mod.scan(root)
    if run_id:
        runs_mod.check_run_id(run_id)
        damaged = [d for d in damaged if d.id == run_id]
        if not damaged and not (root / run_id).is_dir():
            runs_mod.open_run(root, run_id)      # the usual "no run … (closest: …)" error
    repaired = []
    for d in damaged:
        folder = root / d.id
        store = LedgerStore(folder / "ledger.json")
        try:
            ledger, source = runs_mod.read_ledger(store.backup), "ledger.json.bak"
        except (FileNotFoundError, runs_mod.LedgerDamaged):
            ledger, source = _rebuilt(folder), "the run folder (resources recorded since are unknown)"
        store.restore(ledger)
        run = Run(folder)
        run.event(f"doctor: ledger rebuilt from {source} ({d.reason})")
        progress.log(f"run {d.id}: ledger rebuilt from {source}")
        found = _found_again(run, progress) if source.startswith("the run folder") else []
        repaired.append({"run": d.id, "from": source, "was": d.reason, "found_again": found,
                         "reconciled": _reconcile(run, progress)})
    return {"repaired": repaired, "message": None if repaired else "no damaged ledger found"}


def _found_again(run: Run, progress: Progress) -> list[dict]:
    """What of the run still lives without a record (its server, its worker), recorded again for `down`."""
    try:
        found = _provider(run, None, progress).unrecorded()
    except ImgclsError:
        return []
    for entry in found:
        entry = dict(entry)
        run.record(entry.pop("kind"), entry.pop("id"), **entry)
        progress.log(f"run {run.id}: found {entry.get('name')} still running; recorded it again")
    return [{"kind": e["kind"], "id": e["id"], "name": e.get("name")} for e in found]


def _rebuilt(folder: Path) -> dict:
    import json

    import yaml

    try:
        cfg = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        cfg = {}
    parts = runs_mod.id_parts(folder.name)
    name = cfg.get("name") or (parts[0] if parts else folder.name)
    provider = cfg.get("provider") or (parts[1] if parts else "local")
    # when the run was made, not now: it must not become the newest run of its config
    created = parts[2].isoformat(timespec="seconds") if parts else now()
    steps = {}
    for step, file in (("train", "train.json"), ("evaluate", "evaluation.json")):
        if (folder / "results" / file).exists():
            steps[step] = {"restored_from": f"results/{file}"}
    try:  # the train step as it was written, so the run is "trained" again and is not retrained
        steps["train"] = {**json.loads((folder / "results" / "train.json").read_text()), **steps.get("train", {})}
    except (OSError, ValueError):
        pass
    return {"run_id": folder.name, "name": name, "provider": provider, "created": created, "steps": steps,
            "resources": [], "operations": [], "events": [{"at": now(), "message": "rebuilt without a backup"}]}


def _reconcile(run: Run, progress: Progress) -> list[dict]:
    pending = run.pending()
    if not pending:
        return []
    try:
        provider = _provider(run, None, progress)
    except ImgclsError as exc:
        return [{"kind": p["kind"], "name": p.get("name"), "result": f"not checked: {exc.message}"} for p in pending]
    out = []
    for p in pending:
        found = ask(lambda p=p: provider.find(p), "unknown")
        if found == "unknown":
            out.append({"kind": p["kind"], "name": p.get("name"), "result": "not checked (the service did not answer)"})
        elif found is None:
            out.append({"kind": p["kind"], "name": p.get("name"), "result": "still pending (not found)"})
        else:
            found = dict(found)
            run.record(p["kind"], found.pop("id"), name=p["name"], **found)
            out.append({"kind": p["kind"], "name": p.get("name"), "result": "found and recorded"})
    return out
