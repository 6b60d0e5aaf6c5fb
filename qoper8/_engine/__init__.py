"""The engine: a pool of persistent children and the jobs they run, in rooms of one job each.

Nothing is imported here: a child imports ``qoper8._engine.child_main`` and must not pay for
the master's modules. The rooms, what each owns and which way calls go are drawn at the top of
``pool.py`` and in ``docs/ARCHITECTURE.md``.
"""
