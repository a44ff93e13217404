"""The run's iterations in a Custom Vision project: the project's iteration limit (refused, never made
room for by deleting), the run-derived name an iteration is given, and finding the iteration a run
started when a kill came between `train_project` and the ledger."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from ...errors import ProviderError

if TYPE_CHECKING:
    from ...runs import Run
    from .client import Client

MAX_ITERATIONS = 20          # per project (S0 tier); the service refuses to train past it
# How far the service's clock (an iteration's `created`) may run behind ours (the intent's `created`)
# and still count; and how long after the intent the call may have reached the service (retries
# with Retry-After waits add up to a few minutes).
CLOCK_SKEW = dt.timedelta(seconds=60)
CALL_WINDOW = dt.timedelta(minutes=15)


def name_for(run: Run, attempt: int) -> str:
    """The name an iteration of this run gets: the run id, so a person (and `find`) can tell whose it is."""
    return run.id if attempt <= 1 else f"{run.id}-{attempt}"


def check_room(iterations: list[dict], project_name: str) -> None:
    """Refuse to train in a project at its iteration limit. Making room would mean deleting iterations
    the run did not create (the user's); which ones may go is the user's call."""
    if len(iterations) < MAX_ITERATIONS:
        return
    spare = [i for i in sorted(iterations, key=lambda i: i["created"] or "") if not i["publish_name"]
             and i["status"] != "Training"]
    names = ", ".join(f"'{i['name']}'" for i in spare[:5]) + (" …" if len(spare) > 5 else "")
    raise ProviderError(
        f"Custom Vision project '{project_name}' has {len(iterations)} iterations, the most a project may have "
        f"(MAX_ITERATIONS = {MAX_ITERATIONS}); imgcls deletes only what its runs created, so it will not make room",
        hint=(f"delete an iteration you no longer need (unpublished, oldest first: {names}) in the Custom Vision "
              "portal, then run the same command again" if spare else
              "every iteration is published or training: unpublish and delete one in the Custom Vision portal, "
              "then run the same command again"),
        limit=MAX_ITERATIONS, removable=[i["name"] for i in spare])


def candidates(client: Client, entry: dict, others: set[str]) -> list[dict]:
    """The iterations a pending entry's `train_project` may have created: one is the run's, none means
    the call never made it, several are too many to tell.

    An iteration named as the run names them is certain. Otherwise (the kill came before the run could
    name or record it) it is an iteration new since the entry's snapshot (`existing`, listed just before
    the call) that no other run records, of the training type asked for, created in the call's window
    (from `asked`). The service trains one iteration of a project at a time, so normally one qualifies;
    two do when someone else trained in the project after the kill, and then none may be claimed:
    taking a user's iteration for the run's would let `down` delete it. (A user who trains there between
    the kill and the next `train --run`/`down`, while the run's own call never reached the service,
    would be mistaken for the run: nothing on an iteration says who asked for it, so this is the
    narrowest rule there is.)"""
    iterations = client.iterations(entry["project_id"])
    named = [i for i in iterations if i["name"] == entry["name"]]
    if named:
        return named[:1]
    known = set(entry.get("existing") or ()) | others
    since = _when(entry.get("asked") or entry["created"])
    return [i for i in iterations if i["id"] not in known and i["created"]
            and since - CLOCK_SKEW <= _when(i["created"]) <= since + CALL_WINDOW
            and i["training_type"] in (None, entry.get("training_type", i["training_type"]))]


def _when(stamp: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
