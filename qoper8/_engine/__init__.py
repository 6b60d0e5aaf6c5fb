"""The engine: a pool of persistent children and the jobs they run, in rooms of one job each.

Nothing is imported here: a child imports ``qoper8._engine.child_main`` and must not pay for
the master's modules. ``pool.Pool`` is the public face; ``docs/ARCHITECTURE.md`` lists the
rooms and where the next capabilities plug in.

Data flow (every arrow runs on the master's event loop)::

    submit(action) ──encode (JSON; InvalidAction here)──▶ Dispatcher.enqueue ─┬─ idle child?
                                                                               │  send it now
                                                                               └─ no: queue
    ┌──────────────────────────── Dispatcher (jobs) ───────────────────────────────────────┐
    │ child frame ─▶ child_frame(): settle the job's future ─▶ child_free(child):          │
    │     watch_retire? ─▶ Supervisor.retire_if_due ─▶ retire (max jobs, memory, surplus,  │
    │                                                   old generation)                     │
    │     [between jobs: broadcasts, asks · pinned: an actor's calls — the next issues]     │
    │     else the next QUEUED job straight to this child, or onto the idle stack           │
    │ deadline ─▶ queued: JobTimeout │ running: JobTimeout, kill the child                  │
    └──────────────▲───────────────────────────────┬────────────────────────────────────────┘
                   │ child_free / child_lost       │ retire_if_due
    ┌──────────────┴───────── Supervisor (processes) ▼──────────────────────────────────────┐
    │ spawn (fork server) ─▶ READY ─▶ child_ready ─▶ Dispatcher.child_free                 │
    │ exit (server) ─▶ child_exited ─▶ Dispatcher.child_lost (ChildDied) ─▶ ChildHealth    │
    │     (failed start? degraded? give up?) ─▶ reconcile()                                │
    │ target ◀─ resize · reload (a new generation) · [autoscale]; reconcile(): start or    │
    │     retire until live == target, respawns after the back-off of failed starts         │
    └──────────────────────────────────────────────────────────────────────────────────────┘

Everything runs on the event loop thread and nothing here blocks it: a generation's fork
server forks its children on request (``start_method="spawn"``: each is spawned on one
dedicated thread), exits are reported by the fork server (or noticed through pidfds), frames
arrive through asyncio. A job reaches a child only when that child is idle, so a child never
holds a second job and a queued job stays cancellable until the moment it is dispatched.
"""
