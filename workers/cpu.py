"""Example worker module: CPU-bound work that would stall an event loop for seconds.

Pure-Python loops hold the GIL, so threads cannot run them in parallel; children can.
"""

from __future__ import annotations

import hashlib

import qoper8

worker = qoper8.Worker()


@worker.handler("primes.count")
def count_primes(below: int) -> int:
    """Count the primes below ``below`` with a sieve of Eratosthenes."""
    if below < 3:
        return 0
    sieve = bytearray([1]) * below
    sieve[0] = sieve[1] = 0
    for i in range(2, int(below**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, below, i)))
    return sum(sieve)


@worker.handler("password.hash")
def hash_password(password: str, salt: str, iterations: int = 200_000) -> str:
    """PBKDF2: deliberately slow key derivation."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()


@worker.handler("fib")
def fib(n: int) -> int:
    """Naive Fibonacci: a classic CPU burner (n=27 takes about 0.1 s)."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)
