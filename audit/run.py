"""An audit of one or more sources: each chain on its own, then across them, then the checkpoint.

The only things trusted are the genesis (given, or read from the first
data dir and named in the report as the anchor) and the validators' keys it
names. Each source is replayed from the genesis, or from the auditor's
checkpoint once the source shows it still holds the checkpoint's block and
that its log extends the checkpoint's. Then the sources are compared: a
fork is reported with the validators who signed both blocks. The checkpoint
moves to the lowest head the sources verified, and only when every source
passed: a failure is reported again on the next run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.checkpoint import Checkpoint, CheckpointError, CheckpointFile
from audit.engine import ChainAuditor, ProgressCallback, SourceResult
from audit.forks import Fork, VerifiedSource, find_forks
from audit.signatures import SignatureChecks
from audit.sources import ApiSource, ChainSource, SourceUnavailable, StoreSource, verify_extension
from ledger.block import BlockHeader, decode_header
from ledger.errors import InvalidBlock, LedgerError, VerificationFailure
from ledger.genesis import Genesis
from ledger.state import account_key, validator_set_in_force
from ledger.store import Store
from node.client import ApiError

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_CANNOT_RUN = 2

ACCOUNTS_COMPARED_MAX = 20
"""Accounts read back from each node (with proofs) and compared with the replay: the most recently written."""


@dataclass
class AuditReport:
    sources: list[SourceResult] = field(default_factory=list)
    forks: list[Fork] = field(default_factory=list)
    anchor: str = ""
    """What the audit trusted: the genesis and where it came from."""
    checkpoint: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        if self.forks or any(not r.ok and r.could_run for r in self.sources):
            return EXIT_CHECK_FAILED
        if any(not r.could_run for r in self.sources):
            return EXIT_CANNOT_RUN
        return EXIT_OK

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "exit_code": self.exit_code, "anchor": self.anchor,
                "sources": [r.to_json() for r in self.sources], "forks": [f.to_json() for f in self.forks],
                "checkpoint": self.checkpoint}

    def describe(self) -> list[str]:
        lines = [f"trusted: {self.anchor}"]
        for r in self.sources:
            if r.ok:
                since = f" (new since height {r.from_height - 1})" if r.from_height > 1 else ""
                replayed = ", replayed through the contracts" if r.replayed else ""
                lines.append(f"{r.source}: OK, {r.blocks} blocks, {r.transactions} transactions{since}, "
                             f"head {r.head_height} {r.head_hash[:16]}{replayed} "
                             f"({r.seconds:.1f} s, {r.tx_per_s:,.0f} tx/s)")
            elif not r.could_run:
                lines.append(f"{r.source}: could not run: {r.detail}")
            else:
                lines.append(f"{r.source}: FAILED at height {r.height}: {r.code}: {r.detail}")
            lines.extend(f"  note: {note}" for note in r.notes)
        lines.extend(fork.describe() for fork in self.forks)
        if self.checkpoint is not None:
            lines.append(f"checkpoint: height {self.checkpoint['height']} saved to {self.checkpoint['path']}")
        return lines


SourceOpener = Callable[[], ChainSource]
ProgressFactory = Callable[[str], ProgressCallback | None]


@dataclass
class _Done:
    source: ChainSource
    result: SourceResult
    auditor: ChainAuditor | None


def audit_sources(genesis: Genesis, openers: list[tuple[str, str, SourceOpener]], *, anchor: str,
                  state_file: Path | None = None, workers: int | None = None,
                  progress: ProgressFactory = lambda name: None) -> AuditReport:
    """Audit every source (name, kind, opener); compare them; save the checkpoint."""
    report = AuditReport(anchor=anchor)
    checkpoint_file = CheckpointFile(state_file, genesis) if state_file is not None else None
    done: list[_Done] = []
    # An unusable state file stops the audit before any source (CheckpointError: could not run).
    loaded = [checkpoint_file.load()] if checkpoint_file is not None else [None]

    def load_saved() -> Any:
        """The checkpoint for the next source: each replays on its own copy of the saved state."""
        if loaded:
            return loaded.pop()
        return checkpoint_file.load() if checkpoint_file is not None else None

    try:
        with SignatureChecks(workers) as signatures:
            for name, kind, opener in openers:
                result = SourceResult(name, kind)
                report.sources.append(result)
                try:
                    source = opener()
                except SourceUnavailable as error:
                    result.cannot_run(str(error))
                    continue
                except LedgerError as error:  # e.g. a file that is not a store
                    result.fail(error, error.height)
                    continue
                auditor = _audit_one(genesis, source, result, load_saved, signatures, progress(name))
                done.append(_Done(source, result, auditor))
        report.forks = find_forks([
            VerifiedSource(d.source.name, d.auditor.verified_hashes, d.auditor.position.height, d.source,
                           d.auditor.validator_sets)
            for d in done if d.auditor is not None], genesis.chain_id)
        if checkpoint_file is not None and report.exit_code == EXIT_OK:
            report.checkpoint = _save_checkpoint(checkpoint_file, done)
    finally:
        for d in done:
            d.source.close()
            if d.auditor is not None:
                d.auditor.close()
        if checkpoint_file is not None:
            checkpoint_file.close()
    return report


def _audit_one(genesis: Genesis, source: ChainSource, result: SourceResult, load_saved: Callable[[], Any],
               signatures: SignatureChecks, progress: ProgressCallback | None) -> ChainAuditor | None:
    started = time.monotonic()
    auditor: ChainAuditor | None = None
    try:
        _check_same_chain(genesis, source)
        saved = load_saved()
        head = source.head_height()
        if saved is None:
            auditor = ChainAuditor.from_genesis(genesis, signatures)
        else:
            checkpoint, state = saved
            _check_still_holds(source, checkpoint, head)
            auditor = ChainAuditor(genesis, state, checkpoint.position, signatures)
        result.from_height = auditor.position.height + 1
        auditor.run(source, head, result, progress)
        if result.ok and saved is not None:
            checkpoint = saved[0]
            try:
                verify_extension(source, checkpoint.position.log_size, checkpoint.log_root,
                                 auditor.position.log_size, auditor.log_root())
            except LedgerError as error:
                error.height = auditor.position.height
                raise
            if auditor.position.log_size > checkpoint.position.log_size > 0:
                result.notes.append(f"log of {auditor.position.log_size} transactions is a consistent extension "
                                    f"of the {checkpoint.position.log_size} verified before (RFC 9162 proof checked)")
        if result.ok and isinstance(source, ApiSource):
            _compare_reported_accounts(source, auditor, result, progress)
    except CheckpointError as error:
        result.cannot_run(error.detail)
    except LedgerError as error:
        result.fail(error, auditor.position.height + 1 if auditor is not None else None)
    except ApiError as error:
        result.cannot_run(f"{source.name}: {error.detail}")
        result.height = auditor.position.height + 1 if auditor is not None else None
    except (TypeError, ValueError, KeyError, AttributeError) as error:  # a node's answer of the wrong shape
        result.fail(LedgerError("malformed_encoding", f"{source.name}: {type(error).__name__}: {error}"),
                    auditor.position.height + 1 if auditor is not None else None)
    finally:
        result.seconds = time.monotonic() - started
    return auditor


def _check_same_chain(genesis: Genesis, source: ChainSource) -> None:
    if isinstance(source, StoreSource) and source.genesis.compute_hash() != genesis.compute_hash():
        raise InvalidBlock("genesis_mismatch", f"{source.name} holds another genesis than the trusted one", height=0)
    if isinstance(source, ApiSource) and source.chain_id != genesis.chain_id:
        raise InvalidBlock("wrong_chain", f"{source.name} serves chain {source.chain_id!r}", height=0)


def _check_still_holds(source: ChainSource, checkpoint: Checkpoint, head: int) -> None:
    """The source must still hold the block the auditor verified at its checkpoint, and that block's
    certified header must carry the checkpoint's roots (else the state file was altered)."""
    position = checkpoint.position
    if position.height == 0:
        return
    if head < position.height:
        raise VerificationFailure("history_changed", f"the source holds {head} blocks; {position.height} were "
                                  "verified before", height=head + 1)
    found = source.header_and_certificate(position.height)
    try:
        header = BlockHeader.decode(found[0]) if found is not None else None
    except LedgerError:
        header = None
    if header is None or header.compute_hash() != position.head_hash:
        raise VerificationFailure("history_changed", "the block here is not the one verified before",
                                  height=position.height)
    if (header.state_root, header.log_size, header.log_root, header.timestamp_ms) != (
            checkpoint.state_root, position.log_size, checkpoint.log_root, position.timestamp_ms):
        raise CheckpointError("checkpoint_unusable", "the state file's roots are not those of the block it names "
                              f"at height {position.height}: it was altered")


def _compare_reported_accounts(source: ApiSource, auditor: ChainAuditor, result: SourceResult,
                               progress: ProgressCallback | None) -> None:
    """The balances a node reports (with proofs) are the replayed ones, at the height the proof names.

    The members' accounts written most recently are read back (holding accounts such as ``@escrow`` are
    not readable through the API; a member that governance removed is skipped).
    """
    state = auditor.state
    names = [key[len(b"member/"):].decode() for key in state.values if key.startswith(b"member/")]
    names = sorted((n for n in names if account_key(n) in state.values),
                   key=lambda n: -state.written_at[account_key(n)])[:ACCOUNTS_COMPARED_MAX]
    compared = 0
    for name in names:
        try:
            proof = source.client.get_account(name, proof=True).proof
        except ApiError as error:
            if error.status == 404:  # the replay holds this member's account: the node hides it
                raise VerificationFailure("balance_mismatch", f"{source.name} says {name}'s account does not "
                                          "exist", height=auditor.position.height) from error
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise VerificationFailure("balance_mismatch", f"{source.name} answered a malformed account for {name}",
                                      height=auditor.position.height) from error
        if proof is None:
            raise VerificationFailure("balance_mismatch", f"{source.name} gave no proof for {name}",
                                      height=auditor.position.height)
        proof_height = decode_header(proof.anchor.header_bytes).height
        if proof_height > auditor.position.height:  # the node moved on: audit up to where its answer stands
            source.refresh_head()
            auditor.run(source, proof_height, result, progress)
            if not result.ok:
                return
        if proof_height != auditor.position.height:
            raise VerificationFailure("balance_mismatch", f"{source.name} proved {name}'s account at height "
                                      f"{proof_height}, below its head {auditor.position.height}",
                                      height=auditor.position.height)
        if proof.value != state.get(account_key(name)):
            raise VerificationFailure("balance_mismatch", f"{source.name} reports {name}'s account differently "
                                      "from the replay", height=proof_height)
        try:
            proof.verify(auditor.chain_id, validator_set_in_force(state, proof_height))
        except LedgerError as error:
            error.height = proof_height
            raise
        compared += 1
    result.notes.append(f"{compared} accounts read back from the node with proofs equal the replayed ones")


def _save_checkpoint(checkpoint_file: CheckpointFile, done: list[_Done]) -> dict[str, Any] | None:
    """Save the lowest head the sources verified (each extends it; called only when every source passed)."""
    intact = [d for d in done if d.result.ok and d.auditor is not None]
    if not intact:
        return None
    lowest = min(intact, key=lambda d: d.auditor.position.height)  # type: ignore[union-attr]
    auditor = lowest.auditor
    assert auditor is not None
    checkpoint_file.save(auditor.position, auditor.log_root(), auditor.state)
    return {"path": str(checkpoint_file.path), "height": auditor.position.height,
            "head_hash": auditor.position.head_hash.hex(), "log_size": auditor.position.log_size,
            "state_root": auditor.state.root.hex()}


def audit_data_dir(directory: Path, *, workers: int | None = 0, state_file: Path | None = None) -> SourceResult:
    """One data dir, anchored on its own genesis: the result of its audit (for scripts and tests)."""
    genesis = Store.read_genesis(directory)
    report = audit_sources(genesis, [(str(directory), "data-dir", open_store(directory))], anchor="its own genesis",
                           state_file=state_file, workers=workers)
    return report.sources[0]


def open_store(directory: Path) -> SourceOpener:
    return lambda: StoreSource(directory)


def open_node(url: str, member: str, key: Any) -> SourceOpener:
    return lambda: ApiSource(url, member, key)


__all__ = ["EXIT_CANNOT_RUN", "EXIT_CHECK_FAILED", "EXIT_OK", "AuditReport", "audit_data_dir", "audit_sources",
           "open_node",
           "open_store"]
