"""A module whose `worker` attribute is not a qoper8.Worker."""

worker = "nope"
