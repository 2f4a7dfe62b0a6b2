"""The deterministic consensus simulator: real cores, a fake network, clock and disk, one seed.

``network`` models links (delay, loss, duplication, reordering, partitions);
``cluster`` runs N consensus cores with fake applications, signer WALs in
memory, crashes and Byzantine validators, and checks safety and liveness.
``tests/test_consensus_sim.py`` runs it over many seeds.
"""
