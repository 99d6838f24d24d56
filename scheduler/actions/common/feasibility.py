"""One pod's verdict on every node, as the placement path decides it: static filters, resources, then
the pod filters (with everything placed so far). For explanations and for the differential test that
holds these verdicts against kube-scheduler's."""

from __future__ import annotations

from scheduler.api.pod import Pod
from scheduler.framework.session import Session


def node_verdicts(session: Session, pod: Pod) -> dict[str, str | None]:
    """Node name -> why the pod cannot go there now (None: it can)."""
    table = session.table
    out: dict[str, str | None] = {}
    if pod.problems:
        return dict.fromkeys(table.names, pod.problems[0][1])
    req = table.sparse(pod.request)
    static = session.hooked("node_filter")
    dynamic = session.dynamic_filters(pod)
    for i, node in enumerate(table.nodes):
        why = None
        for p in static:
            why = p.node_filter(pod.constraints, node, session.node_labels(i))
            if why is not None:
                break
        if why is None:
            rel = table.releasing.get(i)
            free = table.free[i]
            short = (
                [n for n in pod.request.names() if n not in table.dim_index]
                if req is None
                else [table.dims[d] for d, v in req if free[d] - (rel[d] if rel else 0) < v]
            )
            if short:
                why = f"Insufficient {', '.join(short)}"
        if why is None:
            for p in dynamic:
                why = p.pod_filter(session, pod, i)
                if why is not None:
                    break
        out[node.name] = why
    return out
