"""`imgcls export` on Custom Vision: the model of a compact domain, exported per platform (started or
joined, waited for) and downloaded into the export folder under names kept inside it."""
from __future__ import annotations

from pathlib import Path

from ...errors import ProviderError, UnsupportedError
from ...paths import confined
from ..base import TrainResult
from . import project as project_mod
from .project import code_of


def export(provider, model: TrainResult, dest: Path) -> list[Path]:
    client = provider.client
    project_id = provider._project_id(model)
    domain_id = (model.extra or {}).get("domain_id") or client.iteration(project_id, model.model_id)["domain_id"]
    domain = client.domain(domain_id)
    if not domain["exportable"]:
        raise UnsupportedError(f"Custom Vision exports only models trained in a compact domain; this run's "
                               f"domain is '{domain['name']}'",
                               hint="set customvision.domain to a compact one, e.g. 'General (compact)', "
                                    "and train a new run")
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for platform in project_mod.platforms(domain, provider.section.export_platforms, provider.progress,
                                          strict=True):
        url = _exported(provider, project_id, model.model_id, platform)
        # The platform's spelling comes from the service (the domain's list): kept inside dest.
        path = confined(dest, f"{provider.config.name}-{platform.lower()}.zip", "Custom Vision's export platform")
        size = client.download(url, path)
        provider.progress.log(f"exported {platform}: {path} ({size / 1e6:.1f} MB)")
        paths.append(path)
    return paths


def _exported(provider, project_id: str, iteration_id: str, platform: str) -> str:
    """Start (or join) the export to `platform` and wait for its download URL."""
    client = provider.client

    def look() -> tuple[str, dict]:
        mine = [e for e in client.exports(project_id, iteration_id) if e["platform"] == platform]
        if not mine:
            return "missing", {}
        e = mine[-1]
        state = {"Exporting": "running", "Done": "succeeded"}.get(e["status"], "failed")
        return state, {"status": e["status"], "url": e["url"]}

    state, _ = look()
    if state in ("missing", "failed"):
        try:
            client.export(project_id, iteration_id, platform)
        except ProviderError as exc:
            if code_of(exc) != "BadRequestExportAlreadyInProgress":
                raise
    state, details = provider.wait(look, f"export to {platform}", 30 * 60,
                                   resume_hint=f"run `imgcls export --run {provider.run.id}` again; it joins the export")
    if state != "succeeded" or not details.get("url"):
        raise ProviderError(f"Custom Vision export to {platform} ended as {details.get('status', state)}",
                            hint="run `imgcls export` again")
    return details["url"]
