"""Retention (docs/semantics.md §10): what finished long enough ago is removed, a page at a
time, each page its own short transaction (architecture principle 10).

Three settings say how long, in days from when a thing finished (``0``: as soon as it
finished): ``CALNOTIFY_RETAIN_CONTENT_DAYS`` the content of messages (a delivery's subject,
body and provider answers, with its attempts' answers and its outbox copy; read in-app
notices; reply text), ``CALNOTIFY_RETAIN_DELIVERIES_DAYS`` the rows themselves (a delivery
with its attempts, outbox message and in-app notice; replies), ``CALNOTIFY_RETAIN_EVENTS_DAYS``
appointment events and finished planning jobs. Pending work is never pruned.

A delivery whose content is removed keeps its status, times and counts, and says when the
content went (``content_removed_at``) until the row itself expires.

Each kind pages through an index of its own (the deliveries' two are partial: they hold no
pending row). A page is claimed ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two pruners
never work on the same rows; the background pruner (:mod:`calnotify.ops.pruner`) also takes
a lock so that only one process of a deployment prunes at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    update,
)

from calnotify.config import Settings
from calnotify.db.engine import Database
from calnotify.db.gate import Priority
from calnotify.db.pages import PAGE, in_pages
from calnotify.db.statements import Statement, table
from calnotify.db.tx import Reader, Tx
from calnotify.models import (
    AppointmentEvent,
    Delivery,
    DeliveryAttempt,
    InboundMessage,
    InboxItem,
    OutboxMessage,
    PlanningJob,
)
from calnotify.models.delivery import FINISHED_SQL
from calnotify.models.planning_job import PlanningJobStatus

_D, _T, _O, _I = table(Delivery), table(DeliveryAttempt), table(OutboxMessage), table(InboxItem)
_R, _E, _J = table(InboundMessage), table(AppointmentEvent), table(PlanningJob)
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_CUTOFF: BindParameter[Any] = bindparam("cutoff")
_DEFAULT = Settings.model_fields


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each kind of data is kept after it finished (by default, as the settings'
    defaults say)."""

    content: timedelta = timedelta(days=_DEFAULT["retain_content_days"].default)
    deliveries: timedelta = timedelta(days=_DEFAULT["retain_deliveries_days"].default)
    events: timedelta = timedelta(days=_DEFAULT["retain_events_days"].default)

    @classmethod
    def of(cls, settings: Settings) -> Retention:
        return cls(
            content=timedelta(days=settings.retain_content_days),
            deliveries=timedelta(days=settings.retain_deliveries_days),
            events=timedelta(days=settings.retain_events_days),
        )


#: What a page's work does with the ids it claimed: writes, and the rows of each kind it
#: removes (beside the kind itself: a delivery's attempts, outbox message, in-app notice).
Apply = Callable[[Tx, list[Any], datetime], Awaitable[dict[str, int]]]


@dataclass(frozen=True, slots=True)
class _Kind:
    name: str  # as printed by `calnotify db prune`
    key: Any  # the id column
    order: Any  # the indexed column a page is read in the order of
    where: ColumnElement[bool]  # what is due to go, with the bind parameter "cutoff"
    kept: Callable[[Retention], timedelta]
    apply: Apply
    # Related kinds a dry run counts: (name, count statement given the same cutoff).
    related: tuple[tuple[str, Statement], ...] = ()

    @property
    def page(self) -> Statement:
        return Statement(
            select(self.key)
            .where(self.where)
            .order_by(self.order)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
        )

    @property
    def count(self) -> Statement:
        return Statement(select(func.count()).select_from(self.key.table).where(self.where))


# The deliveries' conditions are written as their partial indexes' are, word for word:
# SQLite uses a partial index only for a query that repeats its condition.
_CONTENT_KEPT = and_(
    text(f"{FINISHED_SQL} AND content_removed_at IS NULL"), _D.c.updated_at < _CUTOFF
)
_FINISHED = and_(text(FINISHED_SQL), _D.c.updated_at < _CUTOFF)
_JOB_DONE = (PlanningJobStatus.DONE.value, PlanningJobStatus.SUPERSEDED.value)


def _blank(model_table: Any, key: Any, **values: Any) -> Statement:
    return Statement(update(model_table).where(key.in_(_IDS)).values(values))


def _remove(model_table: Any, key: Any) -> Statement:
    return Statement(delete(model_table).where(key.in_(_IDS)))


_BLANK_DELIVERIES = _blank(
    _D, _D.c.id, subject="", body="", last_error="", content_removed_at=bindparam("now")
)
_BLANK_ATTEMPTS = _blank(_T, _T.c.delivery_id, error="")
_BLANK_OUTBOX = _blank(_O, _O.c.delivery_id, subject="", body="")
_BLANK_INBOX = _blank(_I, _I.c.id, title="", body="")
_BLANK_REPLIES = _blank(_R, _R.c.id, body="")
_OF_DELIVERIES = {
    "attempts": (_T, _T.c.delivery_id),
    "outbox messages": (_O, _O.c.delivery_id),
    "in-app notices": (_I, _I.c.delivery_id),
}
_COUNT_OF = {
    name: Statement(select(func.count()).select_from(t).where(key.in_(_IDS)))
    for name, (t, key) in _OF_DELIVERIES.items()
}
_REMOVE_OF = {name: _remove(t, key) for name, (t, key) in _OF_DELIVERIES.items()}
_REMOVE_DELIVERIES = _remove(_D, _D.c.id)


async def _remove_content(tx: Tx, ids: list[Any], now: datetime) -> dict[str, int]:
    tx.write(_BLANK_DELIVERIES, {"ids": ids, "now": now})
    tx.write(_BLANK_ATTEMPTS, {"ids": ids})
    tx.write(_BLANK_OUTBOX, {"ids": ids})
    return {}


async def _remove_deliveries(tx: Tx, ids: list[Any], _now: datetime) -> dict[str, int]:
    names = list(_COUNT_OF)
    counts = await tx.fetch(*((_COUNT_OF[n], {"ids": ids}) for n in names))
    for name in names:
        tx.write(_REMOVE_OF[name], {"ids": ids})
    tx.write(_REMOVE_DELIVERIES, {"ids": ids})
    return {n: int(rows[0][0]) for n, rows in zip(names, counts, strict=True)}


def _writing(statement: Statement) -> Apply:
    async def apply(tx: Tx, ids: list[Any], _now: datetime) -> dict[str, int]:
        tx.write(statement, {"ids": ids})
        return {}

    return apply


def _related_to(where: ColumnElement[bool]) -> tuple[tuple[str, Statement], ...]:
    finished = select(_D.c.id).where(where).scalar_subquery()
    return tuple(
        (name, Statement(select(func.count()).select_from(t).where(key.in_(finished))))
        for name, (t, key) in _OF_DELIVERIES.items()
    )


#: Every kind, in the order they are pruned: content before the rows it is part of.
KINDS = (
    _Kind(
        "message content",
        _D.c.id,
        _D.c.updated_at,
        _CONTENT_KEPT,
        lambda r: r.content,
        _remove_content,
    ),
    _Kind(
        "in-app notice content",
        _I.c.id,
        _I.c.read_at,
        and_(_I.c.read_at < _CUTOFF, or_(_I.c.title != "", _I.c.body != "")),
        lambda r: r.content,
        _writing(_BLANK_INBOX),
    ),
    _Kind(
        "reply text",
        _R.c.id,
        _R.c.received_at,
        and_(_R.c.received_at < _CUTOFF, _R.c.body != ""),
        lambda r: r.content,
        _writing(_BLANK_REPLIES),
    ),
    _Kind(
        "deliveries",
        _D.c.id,
        _D.c.updated_at,
        _FINISHED,
        lambda r: r.deliveries,
        _remove_deliveries,
        _related_to(_FINISHED),
    ),
    _Kind(
        "replies",
        _R.c.id,
        _R.c.received_at,
        _R.c.received_at < _CUTOFF,
        lambda r: r.deliveries,
        _writing(_remove(_R, _R.c.id)),
    ),
    _Kind(
        "appointment events",
        _E.c.id,
        _E.c.occurred_at,
        _E.c.occurred_at < _CUTOFF,
        lambda r: r.events,
        _writing(_remove(_E, _E.c.id)),
    ),
    _Kind(
        "planning jobs",
        _J.c.id,
        _J.c.finished_at,
        and_(_J.c.status.in_(_JOB_DONE), _J.c.finished_at < _CUTOFF),
        lambda r: r.events,
        _writing(_remove(_J, _J.c.id)),
    ),
)

#: The names `calnotify db prune` prints, in its order.
NAMES = tuple(name for kind in KINDS for name in (kind.name, *(n for n, _ in kind.related)))

#: Called before each page with the page's transaction: False to stop (another process
#: prunes).
Leader = Callable[[Tx], Awaitable[bool]]


async def _always(_tx: Tx) -> bool:
    return True


async def prune(
    db: Database,
    retention: Retention,
    now: datetime,
    *,
    page: int = PAGE,
    leader: Leader = _always,
    between: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, int]:
    """Remove what ``retention`` no longer keeps, page by page; the rows of each kind
    removed (for content: whose content was removed). ``between`` runs between pages."""
    removed = dict.fromkeys(NAMES, 0)
    for kind in KINDS:
        cutoff = now - kind.kept(retention)
        await _prune_kind(db, kind, cutoff, now, page, leader, removed, between)
    return removed


async def _prune_kind(
    db: Database,
    kind: _Kind,
    cutoff: datetime,
    now: datetime,
    page: int,
    leader: Leader,
    removed: dict[str, int],
    between: Callable[[], Awaitable[None]] | None,
) -> None:
    statement = kind.page

    async def work(tx: Tx) -> int:
        if not await leader(tx):
            return 0
        [rows] = await tx.fetch((statement, {"cutoff": cutoff, "limit": page}))
        ids = [r[0] for r in rows]
        if ids:
            for name, count in (await kind.apply(tx, ids, now)).items():
                removed[name] += count
        removed[kind.name] += len(ids)
        return len(ids)

    await in_pages(db, work, page, Priority.REQUEST, background=True, between=between)


async def would_prune(reader: Reader, retention: Retention, now: datetime) -> dict[str, int]:
    """What :func:`prune` would remove now, by kind (``db prune --dry-run``)."""
    counted = dict.fromkeys(NAMES, 0)
    for kind in KINDS:
        cutoff = {"cutoff": now - kind.kept(retention)}
        statements = [(kind.name, kind.count), *kind.related]
        found = await reader.fetch(*((s, cutoff) for _, s in statements))
        for (name, _), rows in zip(statements, found, strict=True):
            counted[name] = int(rows[0][0])
    return counted
