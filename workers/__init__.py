"""Example worker modules: copy one to start your own."""
