"""The daemon's rooms: ``qoper8 serve`` (its master, signals, sockets, pidfile and log), its
HTTP API and dashboard, and the ``qoper8`` command line. Nothing here is public;
``qoper8.Client`` (``_client``) is the HTTP API's other end and shares only ``http_wire``'s
constants with it.

Calls go one way, from the command line to the engine::

    cli ─▶ cli_commands ─▶ qoper8.Client          (status, submit, resize, stop, ...)
       └▶ cli_actors ──▶ qoper8.Client          (broadcast, actors, actor ...)
    cli ─▶ daemon ─▶ inbox ─▶ signal_actions       TERM, INT, HUP, USR1, USR2 (▶ upgrade)
              │                └▶ sizing           TTIN, TTOU, WINCH
              ├▶ listeners                         bind, --fd, systemd's sockets
              ├▶ http_api ─▶ http_server, http_submit, http_input, http_replies,
              │              status, metrics, events, dashboard, openapi (the route table:
              │              openapi_ops, openapi_messages), http_stream, http_messages,
              │              http_actors (their bodies: http_fields; SSE, NDJSON: http_sse)
              ├▶ history                           the dashboard's points and recent errors
              ├▶ redis_hook ─▶ the Redis consumer  (only with --redis)
              ├▶ log, pidfile
              └▶ the engine (Pool)

``http_api`` sees the pool through ``PoolLike`` and the daemon through its ``Control``
protocol; it imports neither. Importing this package loads nothing: each room is imported
by name.
"""
