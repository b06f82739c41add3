"""The render server pool, in four parts that each do one job.

- :mod:`orrb.pool.wire`: the message format both sides speak (kinds, error table, limits,
  tokens, CURVE keys, the loopback check). The client and the server import it, never each other.
- :mod:`orrb.pool.server`: one process serving one render engine (``orrb serve``).
- :mod:`orrb.pool.supervisor`: the server processes of a pool: spawn, handshake, health, restart.
- :mod:`orrb.pool.client`: :class:`RemoteRenderer`, which shards batches over the servers.
"""

__all__ = ["RemoteRenderer"]


def __getattr__(name):
    # loaded on first use: a server process imports this package but never the client
    if name == "RemoteRenderer":
        from orrb.pool.client import RemoteRenderer

        return RemoteRenderer
    raise AttributeError(f"module 'orrb.pool' has no attribute {name!r}")
