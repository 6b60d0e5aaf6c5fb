"""``python -m bench``: qoper8 against the pools a user would pick instead, in the same run.

Every scenario alternates qoper8 and each peer, repeats, and reports medians, spread and the
ratio qoper8/peer. It asserts nothing; it measures. See ``bench/README.md``.
"""
