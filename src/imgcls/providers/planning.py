"""What a config would create and cost, as a provider answers `Provider.plan(config)`: the Plan value,
and the price tables providers ship beside their module (prices.json: dated, per region, naming its
source). A price the table does not hold is unknown, with the reason; never a guess."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources

HOURS_PER_DAY = 24


@dataclass(frozen=True)
class PlannedResource:
    kind: str                      # bucket, dataset, training job, model, endpoint, compute…
    name: str                      # the name imgcls would give it (<run-id> stands for the run's id)
    action: str                    # "create" (the run makes it; `down` removes it) | "use" (left alone)
    note: str = ""


@dataclass(frozen=True)
class Cost:
    """A dollar figure with how it was reached, or None and why it is unknown."""
    usd: float | None
    basis: str                     # "8 node hours x $3.465 (…)", or the reason it is unknown

    @property
    def known(self) -> bool:
        return self.usd is not None

    def to_json(self) -> dict:
        return {"usd": self.usd, ("basis" if self.known else "unknown"): self.basis}


@dataclass(frozen=True)
class Plan:
    provider: str
    region: str | None
    resources: list[PlannedResource]
    budget: dict                   # {"amount": 8, "unit": "node hours", "note": …}
    training: Cost
    endpoint_per_day: Cost
    prices_as_of: str | None = None
    price_sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def estimate(self) -> dict:
        """estimate_usd: each part (usd + basis, or null + why), and their total when both are known."""
        parts = {"training": self.training, "endpoint_per_day": self.endpoint_per_day}
        total = round(sum(c.usd for c in parts.values()), 2) if all(c.known for c in parts.values()) else None
        return {"total": total, **{k: c.to_json() for k, c in parts.items()}}


def free(what: str) -> Cost:
    return Cost(0.0, what)


def unknown(reason: str) -> Cost:
    return Cost(None, reason)


@dataclass(frozen=True)
class PriceTable:
    provider: str
    as_of: str
    currency: str
    sources: list[str]
    regions: dict[str, dict[str, float]]
    notes: list[str]

    def price(self, region: str | None, sku: str, setting: str) -> tuple[float | None, str]:
        """(USD per unit, "") or (None, why not): no region given, a region or a SKU the table lacks."""
        if not region:
            return None, f"the region is not set ({setting})"
        prices = self.regions.get(region)
        if prices is None:
            return None, (f"no {self.provider} prices for region {region!r} in the table of {self.as_of} "
                          f"(it has {', '.join(sorted(self.regions))})")
        if sku not in prices:
            known = ", ".join(sorted(prices))
            return None, f"no price for {sku!r} in {region} in the table of {self.as_of} (it has {known})"
        return float(prices[sku]), ""

    def cost(self, region: str | None, sku: str, quantity: float, unit: str, setting: str) -> Cost:
        """quantity x the SKU's price in the region, rounded to cents, saying how; unknown when unpriced."""
        rate, why = self.price(region, sku, setting)
        if rate is None:
            return unknown(why)
        return Cost(round(quantity * rate, 2), f"{quantity:g} {unit} x ${rate:g} ({sku}, {region}, "
                                               f"list price of {self.as_of})")


@functools.cache
def prices(package: str) -> PriceTable:
    """The prices.json shipped in a provider's package (e.g. "imgcls.providers.vertex")."""
    data = json.loads(resources.files(package).joinpath("prices.json").read_text(encoding="utf-8"))
    return PriceTable(provider=data["provider"], as_of=data["as_of"], currency=data.get("currency", "USD"),
                      sources=list(data["sources"]), regions={r: dict(p) for r, p in data["regions"].items()},
                      notes=list(data.get("notes", [])))
