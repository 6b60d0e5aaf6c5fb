"""A worker module that cannot be imported."""

import this_module_does_not_exist  # type: ignore[import-not-found]  # noqa: F401

import qoper8

worker = qoper8.Worker()
