"""The `doppel` command line and the local stack supervisor (`doppel up`).

It sits above everything else: it may import services, bench and testkit; nothing imports it.
"""
