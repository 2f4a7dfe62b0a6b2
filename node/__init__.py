"""A running validator: consensus, its write-ahead log, transport, mempool, API."""
