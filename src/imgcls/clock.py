"""The one clock expiry and ages are read from, and the durations a user writes (`2h`, `1d`).

`IMGCLS_NOW` (an ISO 8601 time, e.g. 2026-01-01T12:00:00Z) sets what "now" is for TTLs, `down --expired`
and `status --all`, so tests and dry rehearsals can move time; ledger timestamps stay the real time.
"""
from __future__ import annotations

import datetime as dt
import os
import re

from .errors import ConfigError, ImgclsError

NOW_ENV = "IMGCLS_NOW"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def now() -> dt.datetime:
    """The current time (UTC, aware): $IMGCLS_NOW when set, else the system clock."""
    given = os.environ.get(NOW_ENV, "").strip()
    if not given:
        return dt.datetime.now(dt.timezone.utc)
    try:
        return parse_time(given)
    except ValueError:
        raise ConfigError(f"{NOW_ENV}={given!r} is not an ISO 8601 time",
                          hint=f"write it as 2026-01-01T12:00:00Z, or unset {NOW_ENV}") from None


def parse_time(stamp: str) -> dt.datetime:
    """An ISO 8601 time as an aware datetime (no zone: UTC). ValueError when it is not one."""
    when = dt.datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


MAX_DURATION = dt.timedelta(days=3650)  # past this, a timedelta overflows soon enough; no ttl needs more


def parse_duration(text: str, what: str = "deploy.ttl", error: type[ImgclsError] = ConfigError) -> dt.timedelta:
    """`90s`, `30m`, `2h`, `1d`, `1w` (a number and one unit) as a timedelta; else `error` (ConfigError for
    a config key, UsageError for an option) naming `what`."""
    m = _DURATION.match(str(text))
    if not m:
        raise error(f"{what} = {text!r} is not a duration", hint="write a number and a unit: 90s, 30m, 2h, 1d or 1w")
    seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if seconds <= 0:
        raise error(f"{what} = {text!r} is zero: an endpoint that expires at once would never serve",
                    hint="give a positive duration, e.g. 2h; or leave it out for no expiry")
    if seconds > MAX_DURATION.total_seconds():
        raise error(f"{what} = {text!r} is over {MAX_DURATION.days // 365} years",
                    hint="give a shorter duration, e.g. 30d; or leave it out for no expiry")
    return dt.timedelta(seconds=seconds)


def human(delta: dt.timedelta) -> str:
    """A short duration for people: 3d 4h, 2h 5m, 40s; negative ones as `-2h 5m`."""
    seconds = int(delta.total_seconds())
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m"
    return f"{sign}{minutes}m {secs}s" if minutes else f"{sign}{secs}s"
