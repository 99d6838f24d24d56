"""Atomic gang commit: every member bound, or none.

Per gang: (1) an intent record (the plan: pod -> node, a commit id) is written, so a restarted scheduler
can finish or undo the commit; (2) members are bound concurrently (bounded by the pool); (3) if any member
fails, the members that did bind are rolled back (owned pods deleted for their controller to recreate,
unowned pods re-created from their own spec without the node); (4) the record goes. Gangs of one need none
of this: one bind is atomic by itself.

Where the record lives: a plain gang's (no victims, no claims, a record of at most ANCHOR_RECORD_MAX bytes)
is written by the first member's bind: that member, its anchor, is bound alone by a Binding whose
annotations carry the record (the API server copies a Binding's annotations onto the pod it binds), and the
other members are bound at once after it. So the record and the first bind are one write, and a gang of N
costs N requests (it was N + 1 with the record written apart and emptied by the last bind, and 2N + 2
before that). The record stays on the anchor after the commit (emptying it would cost the request this
saves): it is live only while a member it names is still pending as the pod object it recorded (its uid).
A pod never returns to Pending under the same uid once bound, so a completed commit's record can never look
live again, and while a commit is cut short its unbound members say so. A rollback's record goes on the
PodGroup (the anchor is one of the members it deletes; on the anchor, deleted last, only when the PodGroup is
gone), and a record on the PodGroup outranks its anchor's. A commit with victims or claims, or whose record
is larger, keeps its record on the PodGroup (on the lone pod for a gang of one), cleared by a request of its
own: its plan outlives any member's bind. Recovery reads records on PodGroups, on pending pods, and on the
bound members of gangs that have a pending member. The price: a crash mid-commit followed by the deletion of
every member still unbound (before the next leader recovers) leaves the bound members to stale-gang
eviction, as a deleted PodGroup did with the record there.

Server-side dry runs of the binds are made only where they pay, that is where a refused bind is likely or
its rollback cannot be undone cheaply: a commit that evicts (victims are never evicted for a preemptor that
could not bind), a commit that writes WaitForFirstConsumer claims (they are bound to the planned nodes
before any pod), and a gang whose previous commit had a bind refused (its retry). Elsewhere the record and
the rollback already make the commit all-or-nothing, and a dry run would double the requests of every
gang to save a rollback that the cache check below makes rare: a member the cache already shows gone,
terminating or bound elsewhere fails the commit before anything is written.

A commit that takes room back (reclaim, preempt, consolidate, stale-gang eviction) first records its
eviction plan in the same intent record (each victim with its uid), evicts the victims (the pod condition
DisruptionTarget, then a DELETE with the pod's own grace period and a uid precondition, then an event),
waits until the victims are gone from the nodes it binds to, and only then binds the preemptor whole, as
above. The plan of a preemptor without a PodGroup (a gang of one) is recorded on the preemptor pod itself.
Whoever recovers a plan evicts what is left of it (never a victim twice) and then binds the preemptor
whole or rolls it back whole.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from scheduler.api.resources import Resources
from scheduler.binder.crash import crashpoint
from scheduler.binder.volumes import ClaimBind, ClaimBinder
from scheduler.cache.cluster_state import ClusterState, Snapshot
from scheduler.kube.client import ApiError, KubeClient, inherit, request_priority
from scheduler.kube.paths import NODES, POD_GROUPS, PODS

log = logging.getLogger("kaisched.binder")
INTENT_ANNOTATION = "kai.scheduler/commit-intent"
# the largest record a member's Binding carries (about 50 members): it stays on that pod, in every later
# watch event of it; a larger gang's record goes on its PodGroup (two requests more, under 2% at that size)
ANCHOR_RECORD_MAX = 8192
EVICT_MARGIN_S = 15.0  # how much longer than their grace period victims may take to go before a plan is given up
DEFAULT_GRACE_S = 30  # a pod's terminationGracePeriodSeconds when its spec says none (the API's default)
# GangCommit eviction reason -> (the victim's event reason, what its condition and event say)
EVICTIONS = {
    "reclaim": ("Reclaimed", "{s}: reclaim, evicted so that gang {g} gets its queue's fair share"),
    "preempt": ("Preempted", "{s}: preempt, evicted to make room for higher-priority gang {g}"),
    "consolidate": ("Consolidated", "{s}: consolidate, evicted to be placed elsewhere so that gang {g} fits"),
    "stalegang": (
        "StaleGangEvicted",
        "{s}: stale-gang eviction, gang {g} ran below minMember for longer than the grace period",
    ),
}
EventSink = Callable[[Mapping[str, str], str, str, str, str], None]  # (regarding, reason, note, type, action)


class GangWrite(Protocol):
    """What the committer applies for one gang (framework.record.GangCommit has this shape)."""

    @property
    def job(self) -> str: ...
    @property
    def has_pod_group(self) -> bool: ...
    @property
    def binds(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def evictions(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def pipelined(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def claims(self) -> tuple[tuple[str, str, str], ...]: ...


@dataclass(frozen=True, slots=True)
class Undo:
    """One member a rollback returns to Pending: the pod object it must delete (uid) and, for a pod no
    controller owns, what to create again (base64 zlib JSON: a pod spec can be large)."""

    pod: str
    uid: str
    recreate: str = ""

    def body(self) -> dict[str, Any] | None:
        if not self.recreate:
            return None
        data: dict[str, Any] = json.loads(zlib.decompress(base64.b64decode(self.recreate)))
        return data

    @staticmethod
    def of(pod: str, uid: str, body: dict[str, Any] | None) -> Undo:
        packed = base64.b64encode(zlib.compress(json.dumps(body, sort_keys=True).encode())).decode() if body else ""
        return Undo(pod, uid, packed)


@dataclass(frozen=True, slots=True)
class Victim:
    """One pod an eviction plan evicts: the pod object (uid) it means, why, where it ran and how long it may
    take to terminate (its grace period)."""

    pod: str
    uid: str
    reason: str
    node: str = ""
    grace: int = DEFAULT_GRACE_S


@dataclass(frozen=True, slots=True)
class Intent:
    """What a commit is doing, on the PodGroup, so whoever holds the lease next can finish or undo it.
    Once a rollback starts, `undo` lists every member it returns to Pending, written before the first
    delete: a crash at any point leaves enough to re-create what was deleted."""

    commit_id: str
    gang: str
    bindings: tuple[tuple[str, str], ...]
    holder: str
    uids: tuple[tuple[str, str], ...] = ()  # pod key -> uid of the pod object the plan binds
    undo: tuple[Undo, ...] = ()
    evictions: tuple[Victim, ...] = ()  # the eviction plan: every victim, evicted before any bind
    at: float = 0.0  # wall-clock time the eviction plan was recorded (its victims' deadline counts from it)
    on_pod: bool = False  # recorded on the pod `gang` itself (a gang of one), not on a PodGroup
    claims: tuple[ClaimBind, ...] = ()  # WaitForFirstConsumer claims written before any bind
    # the member pod whose bind (the first) writes the record of a plain gang's commit, and which keeps it;
    # "" when the record is on the PodGroup (or, `on_pod`, on the lone pod itself)
    anchor: str = ""

    def to_json(self) -> str:
        data: dict[str, Any] = {"id": self.commit_id, "holder": self.holder, "bindings": dict(self.bindings)}
        if self.anchor:
            data["gang"] = self.gang
        if self.uids:
            data["uids"] = dict(self.uids)
        if self.undo:
            data["rollback"] = {u.pod: {"uid": u.uid, "recreate": u.recreate} for u in self.undo}
        if self.evictions:
            data["evictions"] = {
                v.pod: {"uid": v.uid, "reason": v.reason, "node": v.node, "grace": v.grace} for v in self.evictions
            }
            data["at"] = round(self.at, 3)
        if self.claims:
            data["claims"] = {b.claim: {"uid": b.uid, "volume": b.volume, "node": b.node} for b in self.claims}
        return json.dumps(data, sort_keys=True)

    def unfinished(self, pending: Mapping[str, Any]) -> bool:
        """Whether a member of the plan is still pending as the pod object it recorded (`pending`: pod key ->
        pod, the cache's pending pods): only then can an anchor's record be a commit cut short. Once every
        member is bound, or gone, or another pod object of its name, no later state makes it one again."""
        uids = dict(self.uids)
        return any((pod := pending.get(p)) is not None and uids.get(p) == pod.uid for p, _ in self.bindings)

    def victims_on_bind_nodes(self) -> tuple[Victim, ...]:
        """The victims whose room the plan binds into: they must be gone before any bind."""
        nodes = {n for _, n in self.bindings}
        return tuple(v for v in self.evictions if v.node in nodes)

    @staticmethod
    def parse(gang: str, text: str, on_pod: bool = False) -> Intent | None:
        """The record kept on `gang` (a PodGroup, or `on_pod` a pod: a lone pod's own, or a gang's anchor)."""
        try:
            data = json.loads(text)
            anchor = ""
            if on_pod and str(data.get("gang") or gang) != gang:  # a gang's record on its anchor member
                anchor, gang, on_pod = gang, str(data["gang"]), False
            bindings = tuple(sorted((str(k), str(v)) for k, v in dict(data["bindings"]).items()))
            uids = tuple(sorted((str(k), str(v)) for k, v in dict(data.get("uids") or {}).items()))
            undo = tuple(
                Undo(str(k), str(v.get("uid", "")), str(v.get("recreate") or ""))
                for k, v in sorted(dict(data.get("rollback") or {}).items())
            )
            evictions = tuple(
                Victim(str(k), str(v["uid"]), str(v["reason"]), str(v.get("node") or ""), int(v.get("grace", 0)))
                for k, v in sorted(dict(data.get("evictions") or {}).items())
            )
            claims = tuple(
                ClaimBind(str(k), str(v["uid"]), str(v.get("volume") or ""), str(v.get("node") or ""))
                for k, v in sorted(dict(data.get("claims") or {}).items())
            )
            holder = str(data.get("holder", ""))
            at = float(data.get("at") or 0.0)
            return Intent(str(data["id"]), gang, bindings, holder, uids, undo, evictions, at, on_pod, claims, anchor)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(slots=True)
class CommitOutcome:
    """What a commit did, per gang (the result type of every ClusterBackend.commit)."""

    bound: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # gang -> bindings that stand
    errors: dict[str, str] = field(default_factory=dict)  # gang -> why it did not bind (after rollback)
    rolled_back: dict[str, int] = field(default_factory=dict)  # gang -> members returned to Pending
    evicted: dict[str, list[str]] = field(default_factory=dict)  # gang -> its victims (pod keys), evicted

    def merge(self, other: CommitOutcome) -> None:
        self.bound.update(other.bound)
        self.errors.update(other.errors)
        self.rolled_back.update(other.rolled_back)
        self.evicted.update(other.evicted)


@dataclass(frozen=True, slots=True)
class GangResult:
    """How one gang's commit ended: an error (None: bound), members returned to Pending, victims evicted."""

    error: str | None = None
    returned: list[tuple[str, str]] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)


class GangCommitter:
    def __init__(
        self, client: KubeClient, state: ClusterState, identity: str, parallelism: int = 32, dry_run: bool = True
    ) -> None:
        self.client = client
        self.claims = ClaimBinder(client)  # WaitForFirstConsumer claims, written and awaited before binds
        self.state = state
        self.identity = identity
        self.dry_run = dry_run
        self.pool = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="bind")
        # binds in flight at once, whichever thread makes them (a lone pod's on its committing thread, a gang's
        # on bind threads too): `parallelism` commits of 8 would otherwise send up to twice as many
        self.slots = threading.BoundedSemaphore(parallelism)
        # gang pipelines wait on member calls in `pool`; a separate pool so they can never starve it
        self.gang_pool = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="gang")
        self.assumed: dict[str, tuple[str, float]] = {}  # pod key -> (node, when) until the watch confirms
        self.evicting: dict[str, str] = {}  # victim pod key -> uid, held as leaving until the watch confirms
        self.lease_holder: Callable[[], str] = lambda: ""  # who holds the lease now (set under leader election)
        # applies queued watch events to `state` (KubeBackend.drain); called only on the committing thread,
        # while it waits for victims to leave, so the cache keeps its one writer
        self.drain: Callable[[], int] = lambda: 0
        self.event: EventSink | None = None  # where victims' events go (the daemon's StatusWriter.event)
        self.evict_margin = EVICT_MARGIN_S
        self.poll_s = 0.05
        self.stopping = threading.Event()  # set on close: waits for victims end, nothing new starts
        # commit ids whose record this process cleared: a cache that still shows one is behind the watch,
        # not a leftover for recovery (pruned to the records the cache still shows)
        self.cleared: set[str] = set()
        self._cleared_lock = threading.Lock()
        # gangs whose last commit had a bind refused: their next commit dry-runs its binds first (a refusal is
        # likely again, and a dry run is cheaper than a rollback); pruned to the gangs the cache still shows
        self.refused: set[str] = set()

    def close(self) -> None:
        self.stopping.set()
        self.gang_pool.shutdown(wait=False, cancel_futures=True)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # --- API calls ----------------------------------------------------------------------------
    def _bind(self, pod_key: str, node: str, dry: bool, record: str | None = None) -> None:
        """POST the pod's Binding (`dry`: validated only). `record`: the pod is its gang's anchor, and the
        Binding's annotations (which the API server copies onto the pod as it binds it) carry the record."""
        ns, name = pod_key.split("/", 1)
        pod = self.state.pod(pod_key)
        meta: dict[str, Any] = {"name": name, "namespace": ns}
        if pod is not None and pod.uid:
            meta["uid"] = pod.uid  # a recreated pod of the same name must not receive this decision
        if record is not None:
            meta["annotations"] = {INTENT_ANNOTATION: record}
        body = {
            "apiVersion": PODS.api_version,
            "kind": "Binding",
            "metadata": meta,
            "target": {"apiVersion": NODES.api_version, "kind": NODES.kind, "name": node},
        }
        with self.slots:
            self.client.request(
                "POST",
                PODS.item(name, ns, "binding"),
                params={"dryRun": "All"} if dry else None,
                body=body,
            )

    def _set_intent(self, where: Intent, intent: Intent | None) -> None:
        """Write (or, None, clear) the intent record where `where` keeps it: its PodGroup, or its lone pod.
        A pod's record goes through its status subresource, which (for pods, unlike most kinds) also takes
        metadata annotations: the eviction's `pods/status` patch right is all it needs, never `pods` patch
        (tests/integration/test_evictions.py checks the API server keeps it)."""
        value = intent.to_json() if intent is not None else None
        if where.anchor:
            path = PODS.of_key(where.anchor, "status")
        else:
            path = PODS.of_key(where.gang, "status") if where.on_pod else POD_GROUPS.of_key(where.gang)
        self.client.request(
            "PATCH",
            path,
            body={"metadata": {"annotations": {INTENT_ANNOTATION: value}}},
            content_type="application/merge-patch+json",
        )

    def _run(self, calls: list[tuple[str, str, str, bool]], record: str | None = None) -> dict[tuple[str, str], str]:
        """(gang, pod, node, dry) calls in parallel; returns (gang, pod) -> error for the failed ones. The last
        call is made on this thread (a lone pod's bind never waits on a hand-off to another thread)."""
        futures: list[tuple[str, str, Future[None]]] = [
            (gang, pod, self.pool.submit(inherit(self._bind), pod, node, dry, record))
            for gang, pod, node, dry in calls[:-1]
        ]
        errors: dict[tuple[str, str], str] = {}
        for gang, pod, node, dry in calls[-1:]:
            try:
                self._bind(pod, node, dry, record)
            except Exception as err:
                errors[(gang, pod)] = str(err)
        for gang, pod, fut in futures:
            try:
                fut.result()
            except Exception as err:
                errors[(gang, pod)] = str(err)
        return errors

    # --- commit -------------------------------------------------------------------------------
    def commit(self, gangs: Sequence[GangWrite]) -> CommitOutcome:
        """Commit every gang at once and wait for all of them (tests and recovery-free callers; the daemon
        goes through the bind pipeline instead). This thread drains the watch into the cache meanwhile, so
        the gangs waiting for victims see them leave."""
        self.assume(gangs)
        futures = [(c, self.gang_pool.submit(self.commit_gang, c)) for c in gangs]
        while not all(f.done() for _, f in futures):
            self.drain()
            wait([f for _, f in futures], timeout=self.poll_s, return_when=FIRST_COMPLETED)
        out = CommitOutcome()
        for c, fut in futures:
            self.settle(out, c, fut.result())
        return out

    def assume(self, gangs: Sequence[GangWrite]) -> None:
        """Hold every placement in the cache at once, before any call (the owner of the cache calls it): no
        later cycle double-books the room while the commit is queued, waits for victims or binds."""
        now = time.monotonic()
        for c in gangs:
            self._assume([*c.binds, *c.pipelined], now)
            for pod_key, _reason in c.evictions:  # leaving: no later cycle counts on them or takes them again
                pod = self.state.pod(pod_key)
                if pod is not None and not pod.deleting:
                    self.evicting[pod_key] = pod.uid
                    self.state.upsert_pod(dataclasses.replace(pod, deleting=True))

    def settle(self, out: CommitOutcome, c: GangWrite, res: GangResult) -> None:
        """Fold one finished commit into `out` and the cache (the owner of the cache calls it): a gang that
        did not bind gives its assumed placement back, so the next cycle may decide it again, and victims
        it did not evict are no longer held as leaving."""
        if res.evicted:
            out.evicted[c.job] = res.evicted
        self._unevict([p for p, _ in c.evictions if p not in res.evicted])
        bindings = [*c.binds, *c.pipelined]
        if res.error is None:
            out.bound[c.job] = bindings
            return
        out.errors[c.job] = res.error
        if res.returned:
            out.rolled_back[c.job] = len(res.returned)
        self.release(c, res.returned)

    def release(self, c: GangWrite, returned: Sequence[tuple[str, str]] = ()) -> None:
        """Give a placement that did not bind back: the members still only assumed, and those rolled back.
        A member the watch has shown bound meanwhile stays as the watch says (rollback deletes it, if so)."""
        unbound = [(p, n) for p, n in (*c.binds, *c.pipelined) if p in self.assumed]
        self._unassume([*unbound, *returned])
        self._unevict([p for p, _ in c.evictions])

    def _unevict(self, victims: Sequence[str]) -> None:
        for pod_key in victims:
            uid = self.evicting.pop(pod_key, None)
            pod = self.state.pod(pod_key)
            if uid is not None and pod is not None and pod.uid == uid and pod.deleting:
                self.state.upsert_pod(dataclasses.replace(pod, deleting=False))

    def commit_gang(self, c: GangWrite) -> GangResult:
        """One gang's whole commit, API calls only (safe on any thread; the cache is only read): a gang that
        evicts records its plan and evicts, waits until its victims have left the nodes it binds to in the
        cache (bounded by their grace period and `evict_margin`), then binds whole; any other binds whole.
        Never raises: a failure is the result's error. Its requests wait for the rate limiter in the line of
        its priority (kube/client.py `request_priority`)."""
        with request_priority(self.gang_priority(c)):
            return self._commit_gang(c)

    def gang_priority(self, c: GangWrite) -> int:
        """The highest priority of the gang's pods: the bind pipeline's order and its requests' place in the
        rate limiter's line."""
        pods = [self.state.pod(p) for p, _ in (*c.binds, *c.pipelined)]
        return max((p.priority or 0 for p in pods if p is not None), default=0)

    def _commit_gang(self, c: GangWrite) -> GangResult:
        try:
            if not (c.evictions or c.pipelined):
                error, returned = self._commit_one(c)
                return GangResult(error, returned)
            try:
                error, intent, evicted = self._plan_and_evict(c)
            except Exception as err:
                return GangResult(f"eviction failed: {err}")
            if error is not None or intent is None or not intent.bindings:
                return GangResult(error, [], evicted)  # an error, or a stale gang's eviction: nothing to bind
            deadline = time.monotonic() + self._bound(intent)
            late = self._await_room({c.job: (intent, deadline)}, drain=False)
            if late:
                self._clear_intent(intent.gang, intent)
                return GangResult(f"{late[c.job]}; the placement was released, nothing was bound", [], evicted)
            error, returned = self._claims_then_binds(c.job, list(intent.bindings), intent)
            return GangResult(error, returned, evicted)
        except Exception as err:  # a bug in the pipeline must not lose the others' outcomes
            return GangResult(f"commit failed: {err}")

    def _commit_one(self, c: GangWrite) -> tuple[str | None, list[tuple[str, str]]]:
        """(error or None, members rolled back). API calls only: the cache is updated by the caller."""
        bindings = list(c.binds)
        intent = None
        changed = self._changed(bindings)
        if changed is not None:
            self._refused(c.job, True)
            return f"{changed} since the decision; nothing was written or bound", []
        claims, error = self.claims.read(c.claims) if c.claims else ((), None)
        if error is not None:
            return f"{error}; nothing was written or bound", []
        if (c.has_pod_group and len(bindings) > 1) or claims:
            # a plain gang's record is written by its first member's bind, and stays on it; claims keep theirs
            # on the PodGroup (their undo outlives any member's bind), as does a record too large to carry
            intent = self._intent(c, (), claims, bindings[0][0])
            if claims or len(intent.to_json()) > ANCHOR_RECORD_MAX or len(intent.uids) < len(bindings):
                intent = dataclasses.replace(intent, anchor="")
            error = self._record_and_validate(intent, validate=bool(claims) or self._refused(c.job))
            if error is not None:
                return error, []
        return self._claims_then_binds(c.job, bindings, intent)

    def _changed(self, bindings: Sequence[tuple[str, str]]) -> str | None:
        """What the cache shows has changed for a member since it was placed (gone, terminating, bound to
        another node), or None: such a bind would be refused, so the commit fails before any write."""
        for pod_key, node in bindings:
            pod = self.state.pod(pod_key)
            if pod is None:
                return f"member {pod_key} is gone"
            if pod.deleting:
                return f"member {pod_key} is terminating"
            if pod.node_name not in ("", node):
                return f"member {pod_key} is bound to {pod.node_name}"
        return None

    def _refused(self, gang: str, now: bool | None = None) -> bool:
        """Whether `gang`'s last commit had a bind refused; `now` records how this commit ended."""
        with self._cleared_lock:
            if now is True:
                self.refused.add(gang)
            elif now is False:
                self.refused.discard(gang)
            return gang in self.refused

    def _intent(
        self, c: GangWrite, victims: tuple[Victim, ...], claims: tuple[ClaimBind, ...], anchor: str = ""
    ) -> Intent:
        bindings = (*c.binds, *c.pipelined)
        uids = tuple((p, pod.uid) for p, _ in bindings if (pod := self.state.pod(p)) is not None and pod.uid)
        on_pod = not c.has_pod_group
        at = time.time() if victims else 0.0
        return Intent(uuid.uuid4().hex, c.job, bindings, self.identity, uids, (), victims, at, on_pod, claims, anchor)

    def _claims_then_binds(
        self, gang: str, bindings: list[tuple[str, str]], intent: Intent | None
    ) -> tuple[str | None, list[tuple[str, str]]]:
        """The gang's claims first, all of them bound (as kube-scheduler's PreBind waits), then its pods.
        Claims that fail are undone (what the volume controller has not completed) and nothing binds."""
        if intent is not None and intent.claims:
            error = self.claims.bind(intent.claims)
            if error is not None:
                try:
                    self.claims.undo(intent.claims)
                except ApiError as err:  # fenced, or the API away: the intent stays for recovery
                    return f"{error}; undoing the claims left to recovery: {err}", []
                self._clear_intent(gang, intent)
                return f"{error}; claims undone, nothing was bound", []
        return self._binds(gang, bindings, intent)

    def _record_and_validate(self, intent: Intent, validate: bool) -> str | None:
        """Write the intent record (unless its anchor's bind carries it), then (`validate`, where it pays: see
        the module's docstring) dry-run every bind; an error (nothing bound, no intent left) or None."""
        try:
            if not intent.anchor:
                self._set_intent(intent, intent)
        except ApiError as err:
            where = "preemptor pod" if intent.on_pod else "PodGroup"
            return f"could not record the commit intent on the {where}: {err}"
        if intent.evictions:
            crashpoint("evict:after-plan")
        if validate and self.dry_run and intent.bindings:
            refused = self._run([(intent.gang, p, n, True) for p, n in intent.bindings])
            if refused:
                self._refused(intent.gang, True)
                first = min((p, e) for (_, p), e in refused.items())
                if not intent.anchor:
                    self._clear_intent(intent.gang, intent)
                return f"validation (dry run) refused {first[0]}: {first[1]}; nothing was bound"
        return None

    def _binds(
        self, gang: str, bindings: list[tuple[str, str]], intent: Intent | None
    ) -> tuple[str | None, list[tuple[str, str]]]:
        """Bind every member; roll back the ones that bound if any failed; clear the intent."""
        failed, done = self._bind_all(gang, bindings, intent)
        self._refused(gang, bool(failed))
        if not failed:
            self._completed(gang, intent)
            return None, []
        errs = {p: e for (_, p), e in failed.items()}
        first = min(errs.items())
        what = f"{len(errs)}/{len(bindings)} binds failed (first: {first[0]}: {first[1]})"
        # a bind that failed may yet have landed (its answer lost): a gang's rollback reads every bind sent (a
        # lone pod's that landed is no harm: it is bound)
        sent = [(p, n) for p, n in bindings if ((gang, p) in failed and len(bindings) > 1) or (p, n) in done]
        try:
            returned = self._return_to_pending(gang, intent, sent)
        except ApiError as err:  # fenced, or the API away: the intent stays for whoever recovers
            return f"{what}; rollback left to recovery: {err}", []
        return f"{what}; rolled back {len(returned)} bound members", returned

    def _bind_all(
        self, gang: str, bindings: list[tuple[str, str]], intent: Intent | None
    ) -> tuple[dict[tuple[str, str], str], list[tuple[str, str]]]:
        """Bind the members concurrently, the record's anchor first and alone (its bind writes the record):
        (failed, bound). The others are bound only once the anchor is, so no member is bound without the
        record that says what is left; an anchor that fails to bind leaves nothing bound and no record."""
        anchor = intent.anchor if intent is not None else ""
        first = [(p, n) for p, n in bindings if p == anchor]
        done: list[tuple[str, str]] = []
        if first:
            assert intent is not None
            failed = self._run([(gang, p, n, False) for p, n in first], record=intent.to_json())
            if failed:
                return failed, done
            done += first
        rest = [(p, n) for p, n in bindings if p != anchor]
        failed = self._run([(gang, p, n, False) for p, n in rest])
        done += [(p, n) for p, n in rest if (gang, p) not in failed]
        return failed, done

    def _completed(self, gang: str, intent: Intent | None) -> None:
        """Every member is bound: the record goes (an anchor keeps its record: no request left)."""
        if intent is not None and intent.anchor and intent.anchor in dict(intent.bindings):
            with self._cleared_lock:
                self.cleared.add(intent.commit_id)
        else:
            self._clear_intent(gang, intent)

    def _assume(self, bindings: list[tuple[str, str]], now: float) -> None:
        """The cache holds the pods on their nodes at once: the next cycle never double-books a node
        while the watch catches up."""
        for pod_key, node in bindings:
            self.assumed[pod_key] = (node, now)
            pod = self.state.pod(pod_key)
            if pod is not None:
                self.state.upsert_pod(dataclasses.replace(pod, node_name=node))

    def _clear_intent(self, gang: str, intent: Intent | None) -> None:
        if intent is None:
            return
        try:
            self._set_intent(intent, None)
        except ApiError as err:  # left for recovery, which will find the gang complete or roll it back
            log.warning("intent on %s not cleared: %s", gang, err)
            return
        with self._cleared_lock:
            self.cleared.add(intent.commit_id)

    # --- evictions ----------------------------------------------------------------------------
    def _plan_and_evict(self, c: GangWrite) -> tuple[str | None, Intent | None, list[str]]:
        """(error or None, the recorded plan, victims evicted). Reads every victim, records the plan (so a
        crash from here on is finished by recovery), validates the binds, then evicts."""
        unknown = sorted({r for _, r in c.evictions if r not in EVICTIONS})
        placed = {p for p, _ in (*c.binds, *c.pipelined)}
        if unknown or placed & {p for p, _ in c.evictions}:
            what = f"unknown eviction reason {unknown[0]!r}" if unknown else "a pod it places is also a victim"
            return f"{c.job}: {what}; nothing was evicted or bound", None, []
        gone: list[str] = []
        victims: list[Victim] = []
        read: dict[str, dict[str, Any]] = {}
        for (pod_key, reason), obj in zip(c.evictions, self._read_all([p for p, _ in c.evictions]), strict=True):
            cached = self.state.pod(pod_key)
            uid = str(((obj or {}).get("metadata") or {}).get("uid") or "")
            if obj is None or (cached is not None and cached.uid and cached.uid != uid):
                gone.append(pod_key)  # gone, or another pod of that name now: its room is free already
                continue
            read[pod_key] = obj
            spec = obj.get("spec") or {}
            grace = spec.get("terminationGracePeriodSeconds")
            victims.append(
                Victim(
                    pod_key, uid, reason, str(spec.get("nodeName") or ""), DEFAULT_GRACE_S if grace is None else grace
                )
            )
        claims, error = self.claims.read(c.claims) if c.claims else ((), None)
        if error is not None:
            return f"{error}; nothing was evicted or bound", None, []
        intent = self._intent(c, tuple(victims), claims)
        error = self._record_and_validate(intent, validate=True)  # victims are evicted only for binds that pass
        if error is not None:
            return error, None, []
        try:
            self._evict_all(intent, read)
        except ApiError as err:
            where = "preemptor pod" if intent.on_pod else "PodGroup"
            return f"eviction failed ({err}); the plan stays on the {where} for recovery to finish", None, gone
        evicted = [*gone, *(v.pod for v in victims)]
        if not intent.bindings:
            self._clear_intent(c.job, intent)
        return None, intent, sorted(evicted)

    def _read_all(self, keys: list[str]) -> list[dict[str, Any] | None]:
        return list(self.pool.map(inherit(self._read), keys))

    def _read(self, pod_key: str) -> dict[str, Any] | None:
        try:
            return self.client.request("GET", PODS.of_key(pod_key))
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def _evict_all(self, intent: Intent, read: Mapping[str, dict[str, Any]] | None = None) -> int:
        """Evict every victim of the plan that is still the recorded pod and not already terminating: the
        first alone, then the rest at once. Idempotent (recovery calls it again); returns how many it deleted.
        `read`: the victims as just read for the plan (else each is read again)."""
        victims = list(intent.evictions)
        if not victims:
            return 0

        def evict(v: Victim) -> bool:
            return self._evict(v, intent.gang, (read or {}).get(v.pod))

        deleted = int(evict(victims[0]))
        if len(victims) > 1:
            crashpoint("evict:after-first")
            deleted += sum(self.pool.map(inherit(evict), victims[1:]))
        crashpoint("evict:before-binds")
        return deleted

    def _evict(self, v: Victim, job: str, obj: Mapping[str, Any] | None = None) -> bool:
        """As kube-scheduler's preemption does: the DisruptionTarget condition (a strategic merge patch of
        the status), then DELETE with the pod's own grace period, both preconditioned on the victim's uid;
        then an event on the victim. True when this call deleted it; a victim already gone, replaced (other
        uid) or terminating counts as done and is not touched. `obj`: the victim as just read, if it was."""
        if obj is None:
            obj = self._read(v.pod)
        meta = (obj or {}).get("metadata") or {}
        if obj is None or str(meta.get("uid") or "") != v.uid or meta.get("deletionTimestamp"):
            return False
        event_reason, text = EVICTIONS[v.reason]
        message = text.format(s=self.state.scheduler_name, g=job)
        condition = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": message,
            "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            self.client.request(
                "PATCH",
                PODS.of_key(v.pod, "status"),
                body={"metadata": {"uid": v.uid}, "status": {"conditions": [condition]}},
                content_type="application/strategic-merge-patch+json",
            )
            self.client.request("DELETE", PODS.of_key(v.pod), body={"preconditions": {"uid": v.uid}})
        except ApiError as err:
            if err.status not in (404, 409, 422):
                raise
            # gone, or replaced (the DELETE's uid precondition says 409, the patch's uid 422): then done
            now = self._read(v.pod)
            if now is not None and str((now.get("metadata") or {}).get("uid") or "") == v.uid:
                raise
            return False
        ns, name = v.pod.split("/", 1)
        log.info("evicted %s (%s) for %s", v.pod, v.reason, job)
        if self.event is not None:
            regarding = {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name, "uid": v.uid}
            self.event(regarding, event_reason, message, "Normal", "Preempting")
        return True

    def _bound(self, intent: Intent) -> float:
        """How long the plan's victims may take to leave the nodes it binds to: their longest grace period
        plus the margin."""
        return max((v.grace for v in intent.victims_on_bind_nodes()), default=0) + self.evict_margin

    def _present(self, v: Victim) -> bool:
        """The victim still holds its node in the cache (terminating counts: its room is not free yet)."""
        pod = self.state.pod(v.pod)
        return pod is not None and pod.uid == v.uid and pod.bound and not pod.terminal

    def _await_room(self, waiting: Mapping[str, tuple[Intent, float]], drain: bool = True) -> dict[str, str]:
        """Watch the cache until every plan's victims have left the nodes it binds to, or its deadline
        (monotonic) passes; returns job -> why it gave up, for the plans whose victims stayed. `drain`: this
        thread owns the cache and applies the watch itself (recovery); a pipeline worker only reads it,
        while the loop applies the watch. Gives up at once when the committer stops (the lease is lost)."""
        pending = dict(waiting)
        late: dict[str, str] = {}
        started = time.monotonic()
        while pending:
            if drain:
                self.drain()
            for job, (intent, deadline) in list(pending.items()):
                left = [v.pod for v in intent.victims_on_bind_nodes() if self._present(v)]
                if not left:
                    del pending[job]
                elif self.stopping.is_set():
                    del pending[job]
                    late[job] = "the scheduler stopped while victims were terminating"
                elif time.monotonic() >= deadline:
                    del pending[job]
                    shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
                    late[job] = f"victims still terminating after {time.monotonic() - started:.0f}s ({shown})"
            if pending:
                self.stopping.wait(self.poll_s)
        return late

    # --- rollback -----------------------------------------------------------------------------
    def rollback(self, gang: str, bound: list[tuple[str, str]], intent: Intent | None = None) -> None:
        """Return bound members to Pending, in the API (durably) and in the cache."""
        self._return_to_pending(gang, intent, bound)
        self._unassume(bound)

    def _unassume(self, returned: list[tuple[str, str]]) -> None:
        for pod_key, _node in returned:
            self.assumed.pop(pod_key, None)
            pod = self.state.pod(pod_key)
            if pod is not None and pod.node_name:
                self.state.upsert_pod(dataclasses.replace(pod, node_name=""))

    def _return_to_pending(
        self, gang: str, intent: Intent | None, bound: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """Durable rollback. First the intent on the PodGroup records, for every member still bound where
        the plan put it, the pod object to delete (uid) and, for a pod no controller owns, its spec to
        create again; only then is anything deleted. Deletes carry preconditions (uid and the
        resourceVersion just read), so they never touch a pod someone else created or changed since.
        Whoever recovers resumes from the record (`_resume`), at any crash point. `bound`: the members whose
        bind was sent (each is read: one not bound there is skipped); returns those it returned to Pending."""
        uids = dict(intent.uids) if intent is not None else {}
        undo: list[Undo] = []
        returned: list[tuple[str, str]] = []
        for pod_key, node in bound:
            try:
                obj = self.client.request("GET", PODS.of_key(pod_key))
            except ApiError as err:
                if err.status == 404:
                    continue  # already gone: its controller (or its owner) has it
                raise
            meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
            uid = str(meta.get("uid") or "")
            if not spec.get("nodeName"):
                continue  # its bind did not land
            if spec.get("nodeName") != node or (pod_key in uids and uids[pod_key] != uid):
                log.warning(
                    "rollback of %s: %s is not the pod this commit bound to %s; left alone", gang, pod_key, node
                )
                continue
            owned = any(o.get("controller") for o in meta.get("ownerReferences") or [])
            undo.append(Undo.of(pod_key, uid, None if owned else pending_copy(obj)))
            returned.append((pod_key, node))
        if not undo:
            if intent is not None:
                self.claims.undo(intent.claims)
            if intent is None or not intent.anchor or self._carries(intent):
                self._clear_intent(gang, intent)  # (an anchor that never bound has no record to clear)
            return returned
        base = intent if intent is not None else Intent(uuid.uuid4().hex, gang, tuple(bound), self.identity)
        # the plan's evictions are done by now (binds come after them): the record carries the rollback only;
        # it goes on the PodGroup, as the anchor is one of the members it deletes
        record = dataclasses.replace(base, holder=self.identity, undo=tuple(undo), evictions=(), anchor="")
        try:
            self._set_intent(record, record)  # raises (fenced, API away): then nothing was deleted
        except ApiError as err:
            if err.status != 404 or not base.anchor or base.on_pod:
                raise
            record = dataclasses.replace(record, anchor=base.anchor)  # the PodGroup is gone: on the anchor,
            self._set_intent(record, record)  # which `_resume` deletes last
        crashpoint("rollback:before-delete")
        self._resume(record)
        return returned

    def _carries(self, intent: Intent) -> bool:
        """Whether the cache shows the intent's anchor carrying its record (a record written through the
        pod's status by an earlier version of this code; a failed bind writes none)."""
        pod = self.state.pod(intent.anchor)
        text = pod.annotation(INTENT_ANNOTATION) if pod is not None else None
        return bool(text) and intent.commit_id in str(text)

    def _resume(self, intent: Intent) -> bool:
        """Carry a recorded rollback through: delete each member that is still the recorded pod object,
        create again what no controller will, clear the intent. Idempotent; False when a re-create must
        wait for the old object to finish terminating (the intent stays for the next cycle)."""
        done = True
        for u in sorted(intent.undo, key=lambda u: u.pod == intent.anchor):  # the record's holder last
            path = PODS.of_key(u.pod)
            try:
                obj: dict[str, Any] | None = self.client.request("GET", path)
            except ApiError as err:
                if err.status != 404:
                    raise
                obj = None
            if obj is not None and str((obj.get("metadata") or {}).get("uid") or "") == u.uid:
                self._delete_exact(path, u.uid, obj)
                crashpoint("rollback:after-delete")
                obj = None
            if obj is None and u.recreate:
                body = u.body()
                assert body is not None
                if not self._recreate(body):
                    done = False
                    continue
                crashpoint("rollback:after-recreate")
        if done:
            self.claims.undo(intent.claims)  # what the volume controller has not completed
            crashpoint("rollback:before-clear")
            self._clear_intent(intent.gang, intent)
        return done

    def _delete_exact(self, path: str, uid: str, obj: Mapping[str, Any]) -> None:
        """Delete the pod only if it is still the object we read (uid and resourceVersion)."""
        for _ in range(5):
            rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid, "resourceVersion": rv}}
            try:
                self.client.request("DELETE", path, body=body)
                return
            except ApiError as err:
                if err.status == 404:
                    return
                if err.status != 409:
                    raise
            obj = self.client.request("GET", path)  # changed since (a status update): read it again
            if str((obj.get("metadata") or {}).get("uid") or "") != uid:
                return  # another pod of that name now: not ours to delete
        raise ApiError(409, "Conflict", {"message": f"{path} kept changing; not deleted"})

    def _recreate(self, body: dict[str, Any]) -> bool:
        """Create the pod again; False while the old object of that name is still terminating."""
        ns = body["metadata"].get("namespace") or "default"
        for attempt in range(20):
            try:
                self.client.request("POST", PODS.collection(ns), body=body)
                return True
            except ApiError as err:
                if err.status != 409:
                    raise
                if attempt == 19:
                    return False
                time.sleep(0.1)
        return False

    # --- recovery -----------------------------------------------------------------------------
    def recover(self, snapshot: Snapshot, busy: frozenset[str] = frozenset()) -> list[str]:
        """Finish or undo every commit a previous run left half done, and return to Pending every gang
        whose not-yet-running members were bound to a node that has since gone. One line per gang. `busy`:
        gangs whose commit the bind pipeline is running now; their records are theirs, not leftovers."""
        actions: list[str] = self._orphans(snapshot, busy)
        # intents on PodGroups, then the eviction plans of lone preemptors (on the pending pod itself; a
        # lone preemptor that bound before its record was cleared keeps a stale, harmless annotation), then
        # the anchors' records on the bound members of gangs with a member pending (of any other gang, every
        # member is bound or gone: its record cannot be live)
        records = [(k, pg.annotation(INTENT_ANNOTATION), False) for k, pg in sorted(snapshot.pod_groups.items())]
        records += [(k, p.annotation(INTENT_ANNOTATION), True) for k, p in sorted(snapshot.pending.items())]
        waiting = sorted({p.group_key for p in snapshot.pending.values() if p.group_key})
        records += [
            (p.key, text, True)
            for g in waiting
            for p in snapshot.members.get(g, ())
            if p.node_name and (text := p.annotation(INTENT_ANNOTATION))
        ]
        on_groups = {k for k, text, on_pod in records if text and not on_pod}
        with self._cleared_lock:
            cleared, self.cleared = self.cleared, set()
            self.refused &= {*snapshot.pod_groups, *snapshot.pending, *busy}
        for key, text, on_pod in records:
            if not text or key in busy:
                continue
            intent = Intent.parse(key, text, on_pod)
            if intent is not None and intent.gang in busy:
                continue  # an anchor's record of a commit the pipeline is running now
            if (
                intent is not None
                and intent.anchor
                and not intent.undo
                and (intent.gang in on_groups or not intent.unfinished(snapshot.pending))
            ):
                continue  # a completed commit's record, or one whose rollback its PodGroup's record holds
            if intent is not None and intent.commit_id in cleared:
                with self._cleared_lock:
                    self.cleared.add(intent.commit_id)  # still shown: keep skipping it until the watch says
                continue
            if intent is None:
                self._clear_intent(key, Intent("", key, (), "", on_pod=on_pod))
                actions.append(f"{key}: unreadable commit intent cleared")
                continue
            if intent.holder and intent.holder != self.identity and intent.holder == self.lease_holder():
                continue  # its writer still holds the lease: it is not ours to finish
            try:
                actions.append(self._recover_one(snapshot, intent))
            except ApiError as err:
                actions.append(f"{key}: recovery of commit {intent.commit_id[:8]} deferred: {err}")
        return actions

    def _orphans(self, snapshot: Snapshot, busy: frozenset[str]) -> list[str]:
        actions = []
        for key, members in sorted(snapshot.members.items()):
            if key in busy:
                continue
            lost = [p for p in members if p.node_name and p.node_name not in snapshot.nodes and p.phase == "Pending"]
            if not lost:
                continue
            # all-or-nothing holds for the whole gang: every member not yet running goes back to Pending
            back = [(p.key, p.node_name) for p in members if p.node_name and p.phase == "Pending"]
            self.rollback(key, back)
            actions.append(
                f"{key}: node {lost[0].node_name} is gone; {len(back)} bound, not yet running members returned"
            )
        return actions

    def _recover_one(self, snapshot: Snapshot, intent: Intent) -> str:
        if intent.undo:  # a rollback was under way: carry it through from the record
            if self._resume(intent):
                self._unassume([(u.pod, "") for u in intent.undo])
                return (
                    f"{intent.gang}: rollback of commit {intent.commit_id[:8]} completed ({len(intent.undo)} members)"
                )
            return f"{intent.gang}: rollback of commit {intent.commit_id[:8]} waits for a pod to finish terminating"
        evicted = ""
        if intent.evictions:  # an eviction plan: evict what is left of it, then wait for its victims to go
            n = self._evict_all(intent)
            evicted = f"; {n} of its {len(intent.evictions)} victims evicted now"
            if not intent.bindings:
                self._clear_intent(intent.gang, intent)
                return f"{intent.gang}: eviction plan {intent.commit_id[:8]} completed{evicted}"
            # victims evicted just now get their whole grace period from now, not from the plan's time
            since = time.time() if n else intent.at
            left = self._bound(intent) - (time.time() - since)
            late = self._await_room({intent.gang: (intent, time.monotonic() + max(0.0, left))})
            snapshot = self.state.snapshot()
            if late:
                self._unplan(snapshot, intent)
                return f"{intent.gang}: commit {intent.commit_id[:8]} released: {late[intent.gang]}{evicted}"
        members = self._members(snapshot, intent)
        as_planned = [(p, n) for p, n in intent.bindings if p in members and members[p].node_name == n]
        missing = [(p, n) for p, n in intent.bindings if p not in members or not members[p].node_name]
        moved = [p for p, n in intent.bindings if p in members and members[p].node_name not in ("", n)]
        if not missing and not moved:
            self._clear_intent(intent.gang, intent)
            return f"{intent.gang}: commit {intent.commit_id[:8]} had completed; intent cleared"
        claim_error = None
        feasible = not moved and self._feasible(snapshot, missing, members)
        if feasible and intent.claims:
            claim_error = self.claims.bind(intent.claims)  # what is left of the writes, then the wait
        if feasible and claim_error is None:
            failed, done = self._bind_all(intent.gang, missing, intent)
            if not failed:
                self._assume(missing, time.monotonic())
                self._completed(intent.gang, dataclasses.replace(intent, bindings=tuple(missing)))
                return f"{intent.gang}: commit {intent.commit_id[:8]} completed ({len(missing)} members bound){evicted}"
            as_planned += done
        self.rollback(intent.gang, as_planned, intent)
        why = f": {claim_error}" if claim_error else ""
        return (
            f"{intent.gang}: commit {intent.commit_id[:8]} rolled back ({len(as_planned)} members returned)"
            f"{why}{evicted}"
        )

    def _members(self, snapshot: Snapshot, intent: Intent) -> dict[str, Any]:
        """The pods of the intent's gang: its PodGroup's members, or the lone preemptor pod itself."""
        if intent.on_pod:
            pod = self.state.pod(intent.gang)
            return {pod.key: pod} if pod is not None else {}
        return {p.key: p for p in snapshot.members.get(intent.gang, ())}

    def _unplan(self, snapshot: Snapshot, intent: Intent) -> None:
        """Give a plan's placement up whole: members it already bound return to Pending, the intent goes."""
        members = self._members(snapshot, intent)
        self.rollback(
            intent.gang, [(p, n) for p, n in intent.bindings if p in members and members[p].node_name == n], intent
        )

    @staticmethod
    def _feasible(snapshot: Snapshot, missing: list[tuple[str, str]], members: Mapping[str, Any]) -> bool:
        """Every missing member still exists, pending, and its planned node still has room for it."""
        need: dict[str, Resources] = {}
        for pod_key, node in missing:
            pod = members.get(pod_key)
            if pod is None or pod.deleting or node not in snapshot.nodes:
                return False
            need[node] = need.get(node, Resources()) + pod.request
        for node, req in need.items():
            used = snapshot.node_used.get(node, Resources())
            if not (req + used).fits_in(snapshot.nodes[node].allocatable):
                return False
        return True


def pending_copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The same pod (name, labels, annotations, spec), unbound, ready to be created again."""
    meta = obj.get("metadata") or {}
    spec = dict(obj.get("spec") or {})
    spec.pop("nodeName", None)
    keep = ("name", "namespace", "labels", "ownerReferences", "finalizers")
    out = {k: meta[k] for k in keep if k in meta}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != INTENT_ANNOTATION}
    if annotations:  # an anchor's record is the old pod's, never the new one's
        out["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": out, "spec": spec}
