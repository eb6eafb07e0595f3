"""`conductor-worker sidecar`: a Conductor-aware proxy next to a worker written with any SDK.

The worker container talks to the sidecar on the pod's loopback as if it were the server. The sidecar
forwards every request as it came, except that it gives polls their ConductorWorker domain and caps
them at the pod's concurrency, and it follows every task the pod holds (ledger.py). From that it serves
the pod's exact busy slots and metrics, drains the pod before the worker gets SIGTERM, extends the
lease of long tasks, and hands back at once what a crashed worker held.
"""
